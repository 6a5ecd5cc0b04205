"""hoc: Hallmarks of Cancer, multi-label (10 hallmarks) per sentence, scored per abstract.

Trained per sentence; a sentence without hallmark has ``labels == []`` (BigBIO's "none").
``document_id`` is the abstract (the PubMed id before the underscore of BigBIO's document_id),
so evaluate() can take, per abstract, the union of its sentences' labels (BLURB's scoring).
"""

from runner.data.tasks.spec import Source, TaskSpec

HALLMARKS = (
    "activating invasion and metastasis", "avoiding immune destruction", "cellular energetics",
    "enabling replicative immortality", "evading growth suppressors",
    "genomic instability and mutation", "inducing angiogenesis", "resisting cell death",
    "sustaining proliferative signaling", "tumor promoting inflammation")


def to_rows(raw: dict[str, list[dict]], fmt: str) -> dict[str, list[dict]]:
    """BigBIO text rows {id, document_id: "<pmid>_<sentence>", text, labels} -> prepared."""
    out = {}
    for split, recs in raw.items():
        rows = []
        for r in recs:
            labels = sorted(set(r["labels"]) - {"none"})
            unknown = set(labels) - set(HALLMARKS)
            if unknown:
                raise ValueError(f"row id {r['id']}: unknown hallmark {min(unknown)!r}")
            rows.append({"id": str(r["document_id"]),
                         "document_id": str(r["document_id"]).split("_")[0],
                         "text": r["text"], "labels": labels})
        out[split] = rows
    return out


SPEC = TaskSpec(
    name="hoc", kind="multilabel", labels=HALLMARKS, text_fields=("text",),
    label_field="labels", primary_metric="micro_f1",
    metrics=("micro_f1", "sentence_micro_f1", "accuracy"), held_out=False,
    source="Hallmarks of Cancer (BigBIO), per sentence; scored per abstract (BLURB)",
    sources=(Source("bigbio", "bigbio/hoc"),
             Source("hf", hf_path="bigbio/hallmarks_of_cancer",
                    hf_name="hallmarks_of_cancer_bigbio_text")),
    stat_kind="counts", preprocess=to_rows,
    bigbio_schema='text',
    card_notes=(("Scored per abstract (document_id): the union of its sentences' labels, micro-F1 "
         'over the 10 hallmarks (BLURB); sentence-level micro-F1 is reported too.'),),
    former_max_length=128)
