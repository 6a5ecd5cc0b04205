"""ddi: drug–drug interaction extraction (DDI 2013), BLURB's construction.

Every unordered pair of drug mentions (DRUG, DRUG_N, BRAND, GROUP) within a sentence of each
BigBIO KB document (sentences also cut at list items: runner/data/tasks/relations.py), both masked
as ``@DRUG$``; label EFFECT / MECHANISM / ADVISE / INT as annotated for the pair (either
direction), else ``false``.
The corpus has no validation split: the 10% (rounded) of the training documents that have
candidate pairs, those with the smallest sha256("ddi-validation:" + document_id), form it;
no document is in two splits.
"""

from collections import Counter

from runner.data.tasks.relations import candidate_pairs, carve_by_document, relation_task
from runner.data.tasks.spec import Source

LABELS = ("false", "EFFECT", "MECHANISM", "ADVISE", "INT")
DRUG_TYPES = frozenset({"DRUG", "DRUG_N", "BRAND", "GROUP"})
VALIDATION_FRACTION = 0.10   # of training documents


def to_rows(raw: dict[str, list[dict]], fmt: str) -> dict[str, list[dict]]:
    """BigBIO KB documents (train, test) -> masked candidate pairs (train, validation, test)."""

    out, notes = {}, []
    for split, docs in raw.items():
        rows, lost, overlap = [], 0, 0
        for doc in docs:
            table = {}
            for r in doc["relations"]:
                if r["type"] in LABELS:
                    table[(r["arg1_id"], r["arg2_id"])] = r["type"]
                    table[(r["arg2_id"], r["arg1_id"])] = r["type"]
            got, skipped = candidate_pairs(
                [doc], first_types=DRUG_TYPES, second_types=DRUG_TYPES, masks=("@DRUG$", "@DRUG$"),
                relation_label=lambda a, b, t=table: t.get((a, b)), unordered=True,
                overlap_mask="@DRUG$", list_cuts=True)
            rows.extend(got)
            lost += skipped["relations_not_within_a_sentence"]
            overlap += skipped["overlapping_pairs_masked_together"]
        out[split] = rows
        notes.append(f"source {split}: {overlap} pairs of overlapping mentions masked as one "
                     f"@DRUG$; {lost} annotated relations lost because their mentions fall in "
                     "different sentences")
    out["train"], out["validation"] = carve_by_document(out["train"], "ddi-validation:",
                                                        VALIDATION_FRACTION)
    per_sentence = Counter(r["id"].rsplit(".", 2)[0] for r in out["train"] + out["validation"])
    top = per_sentence.most_common(3)
    notes.append("source train: the three sentences with most pairs give " + ", ".join(
        f"{n} ({key})" for key, n in top) + f" pairs, {sum(n for _, n in top)} in all")
    return {**{s: out[s] for s in ("train", "validation", "test")}, "notes": notes}


SPEC = relation_task(
    name="ddi", labels=LABELS, preprocess=to_rows,
    source="DDI 2013 (BigBIO KB): drug pairs per sentence, masked @DRUG$; validation = 10% of "
           "train documents by hash",
    sources=(Source("bigbio", "bigbio/ddi", splits=(("train", "train"), ("test", "test"))),
             Source("hf", hf_path="bigbio/ddi_corpus", hf_name="ddi_corpus_bigbio_kb",
                    splits=(("train", "train"), ("test", "test")))),
    card_notes=(
        ("Difference from BLURB: BLURB's DDI pairs come from the corpus' own sentence "
         'boundaries; the BigBIO KB documents keep only character offsets, so sentences '
         'are cut by a regex (runner/data/tasks/relations.py). DrugBank drug labels '
         "enumerate drugs in long lists ('may interact with any of the following: - A ... "
         "or - B ...; C; D'); cut only at sentence ends, such lists give thousands of "
         "pairs each (46,327 train+validation pairs), so DDI also cuts before ' - ' "
         "bullets and after ';' list items. The counts then come close to BLURB's totals; "
         'a relation whose mentions the extra cuts separate is lost (counted below).'),
        ("The DDI 2013 release has no validation split and BLURB's validation documents "
         'are not identified in the BigBIO source; here validation is 10% of the training '
         'documents with candidate pairs, chosen by hash (runner/data/tasks/ddi.py), so '
         "its size differs from BLURB's as well."),
    ),
    blurb_counts=(25296, 2496, 5716),
    former_max_length=256)
