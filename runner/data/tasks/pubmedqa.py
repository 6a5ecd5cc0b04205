"""pubmedqa: yes / no / maybe from a question and its abstract's contexts (PQA-L, 1000 rows).

The expert-labelled set comes unsplit.  Prepared from a source folder that holds
``pubmedqa-official/pqal_split.json`` (the authors' official split as PubMed ids: the 500
official test questions, and fold 0 of their 10-fold split of the other 500 as 450 train / 50
validation), the splits are exactly those ids: PubMedQA numbers compare with published ones.
Without that file (the Hugging Face source, test fixtures) rows are ordered by
sha256("pubmedqa-split:" + pubid): the first 50% test, the next 5% validation, the rest train
(BLURB's sizes, other questions); the data card says which construction it is.
"""

from runner.data.tasks.spec import Source, TaskSpec

SPLIT_FRACTIONS = (("test", 0.5), ("validation", 0.05))   # train: the rest
OFFICIAL_SPLIT = "pubmedqa-official/pqal_split.json"
HASH_NOTE = ("The 1000 expert-labelled questions ordered by sha256('pubmedqa-split:' + pubid): "
             "first 500 test, next 50 validation, last 450 train (BLURB's sizes; without "
             f"`{OFFICIAL_SPLIT}` in the source, so not the official test questions).")
OFFICIAL_NOTE = ("The official PQA-L split (`" + OFFICIAL_SPLIT + "`): test = the 500 "
                 "questions of the authors' test_ground_truth.json, the set BLURB and published "
                 "PubMedQA results score on; train / validation = fold 0 of the authors' "
                 "10-fold split of the other 500 (450 / 50).")


def to_rows(raw: dict[str, list[dict]], fmt: str,
            split_ids: dict[str, list[str]] | None = None) -> dict[str, list[dict]]:
    from runner.data.tasks.relations import hash_order

    recs = [r for split in sorted(raw) for r in raw[split]]
    rows = [{"id": str(r["pubid"]), "document_id": str(r["pubid"]), "question": r["question"],
             "context": " ".join(r["context"]["contexts"]), "label": r["final_decision"]}
            for r in recs]
    if split_ids is not None:
        out = official_split(rows, split_ids)
        out["notes"] = [OFFICIAL_NOTE]
        return out
    order = hash_order([r["id"] for r in rows], "pubmedqa-split:")
    sizes = [(split, round(f * len(rows))) for split, f in SPLIT_FRACTIONS]
    sizes.append(("train", len(rows) - sum(n for _, n in sizes)))
    out, start = {}, 0
    for split, n in sizes:
        out[split] = sorted((rows[i] for i in order[start:start + n]), key=lambda r: r["id"])
        start += n
    return {**{s: out[s] for s in ("train", "validation", "test")}, "notes": [HASH_NOTE]}


def official_split(rows: list[dict], split_ids: dict[str, list[str]]) -> dict[str, list[dict]]:
    """Each split exactly its listed ids (rows sorted by id); ValueError where an id is listed
    twice, is not among the rows, or a row is in no split."""
    by_id = {r["id"]: r for r in rows}
    listed = [i for split in ("train", "validation", "test") for i in split_ids[split]]
    twice = sorted({i for i in listed if listed.count(i) > 1})
    if twice:
        raise ValueError(f"id {twice[0]} is listed in more than one split")
    missing = [i for i in listed if i not in by_id]
    if missing:
        raise ValueError(f"split id {missing[0]} is not a PQA-L row ({len(missing)} such ids)")
    unlisted = sorted(set(by_id) - set(listed))
    if unlisted:
        raise ValueError(f"row {unlisted[0]} is in no split ({len(unlisted)} such rows)")
    return {split: sorted((by_id[i] for i in split_ids[split]), key=lambda r: r["id"])
            for split in ("train", "validation", "test")}


SPEC = TaskSpec(
    name="pubmedqa", kind="classification", labels=("yes", "no", "maybe"),
    text_fields=("question", "context"), label_field="label",
    primary_metric="accuracy", metrics=("accuracy", "macro_f1"), held_out=False,
    source="PubMedQA PQA-L (BigBIO), the official 450/50/500 split (else by hash of pubid)",
    sources=(Source("bigbio", "bigbio/pubmedqa", splits=(("all", "train"),)),
             # the same PQA-L rows and columns as bigbio/pubmedqa/ (pubid, question, context)
             Source("hf", hf_path="qiaojin/PubMedQA", hf_name="pqa_labeled",
                    splits=(("all", "train"),))),
    scored=("yes", "no", "maybe"), stat_kind="classes", preprocess=to_rows,
    bigbio_schema='pubmedqa', split_ids=OFFICIAL_SPLIT,
    former_max_length=512)
