"""pubmedqa: yes / no / maybe from a question and its abstract's contexts (PQA-L, 1000 rows).

The expert-labelled set comes unsplit; rows are ordered by sha256("pubmedqa-split:" + pubid):
the first 50% are test, the next 5% validation, the rest train -- 450 / 50 / 500 of the 1000,
the sizes BLURB uses (BLURB's own test ids are not in the source, so the test rows differ).
"""

from runner.data.tasks.spec import Source, TaskSpec

SPLIT_FRACTIONS = (("test", 0.5), ("validation", 0.05))   # train: the rest


def to_rows(raw: dict[str, list[dict]], fmt: str) -> dict[str, list[dict]]:
    from runner.data.tasks.relations import hash_order

    recs = [r for split in sorted(raw) for r in raw[split]]
    rows = [{"id": str(r["pubid"]), "document_id": str(r["pubid"]), "question": r["question"],
             "context": " ".join(r["context"]["contexts"]), "label": r["final_decision"]}
            for r in recs]
    order = hash_order([r["id"] for r in rows], "pubmedqa-split:")
    sizes = [(split, round(f * len(rows))) for split, f in SPLIT_FRACTIONS]
    sizes.append(("train", len(rows) - sum(n for _, n in sizes)))
    out, start = {}, 0
    for split, n in sizes:
        out[split] = sorted((rows[i] for i in order[start:start + n]), key=lambda r: r["id"])
        start += n
    return {s: out[s] for s in ("train", "validation", "test")}


SPEC = TaskSpec(
    name="pubmedqa", kind="classification", labels=("yes", "no", "maybe"),
    text_fields=("question", "context"), label_field="label",
    primary_metric="accuracy", metrics=("accuracy", "macro_f1"), held_out=False,
    source="PubMedQA PQA-L (BigBIO), 450/50/500 by hash of pubid",
    sources=(Source("bigbio", "bigbio/pubmedqa", splits=(("all", "train"),)),
             # the same PQA-L rows and columns as bigbio/pubmedqa/ (pubid, question, context)
             Source("hf", hf_path="qiaojin/PubMedQA", hf_name="pqa_labeled",
                    splits=(("all", "train"),))),
    scored=("yes", "no", "maybe"), stat_kind="classes", preprocess=to_rows,
    bigbio_schema='pubmedqa',
    card_notes=(("The 1000 expert-labelled questions ordered by sha256('pubmedqa-split:' + "
         "pubid): first 500 test, next 50 validation, last 450 train (BLURB's sizes; "
         "BLURB's own test ids are not in the source, so its test questions differ)."),),
    former_max_length=512)
