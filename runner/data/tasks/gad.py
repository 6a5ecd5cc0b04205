"""gad: gene–disease association (GAD, BLURB's masked sentences), binary; F1 of class "1".

The source has train and test only; validation is carved from train deterministically: the
round(n_train * 535 / 4796) training rows with the smallest sha256("gad-validation:" + id), i.e.
535 of BLURB's 4796 -> 4261 / 535 / 534 (the same fraction for a smaller source, e.g. fixtures).
"""

from runner.data.tasks.spec import Source, TaskSpec

VALIDATION_FRACTION = 535 / 4796   # BLURB's GAD: 4261 train + 535 validation


def to_rows(raw: dict[str, list[dict]], fmt: str) -> dict[str, list[dict]]:
    from runner.data.tasks.relations import hash_order

    out = {}
    for split, recs in raw.items():
        if fmt == "seed-pickle":   # {id, text, label: int}; no document ids: a row is its own
            out[split] = [{"id": str(r["id"]), "document_id": str(r["id"]), "text": r["text"],
                           "label": str(r["label"])} for r in recs]
        else:                      # BigBIO text: {id, document_id, text, labels: ["0"|"1"]}
            out[split] = [{"id": str(r["id"]), "document_id": str(r["document_id"]),
                           "text": r["text"], "label": _one(r["labels"], r["id"])} for r in recs]
    order = hash_order([r["id"] for r in out["train"]], "gad-validation:")
    carved = set(order[:round(len(order) * VALIDATION_FRACTION)])
    train = out["train"]
    out["train"] = [r for i, r in enumerate(train) if i not in carved]
    out["validation"] = [r for i, r in enumerate(train) if i in carved]
    return {s: out[s] for s in ("train", "validation", "test")}


def _one(labels: list, row_id: str) -> str:
    if len(labels) != 1:
        raise ValueError(f"row id {row_id}: expected exactly one label, got {labels!r}")
    return str(labels[0])


SPEC = TaskSpec(
    name="gad", kind="classification", labels=("0", "1"), text_fields=("text",),
    label_field="label", primary_metric="f1", metrics=("f1", "accuracy"),
    held_out=False,
    source="GAD gene-disease association (BLURB split, @GENE$/@DISEASE$ masked); validation "
           "= 535 train rows by hash",
    sources=(Source("bigbio", "bigbio/gad", splits=(("train", "train"), ("test", "test"))),
             Source("seed-pickle", "seed-pickle/gad.pkl",
                    splits=(("train", "train"), ("test", "test"))),
             Source("hf", hf_path="bigbio/gad", hf_name="gad_blurb_bigbio_text",
                    splits=(("train", "train"), ("test", "test")))),
    scored=("1",), stat_kind="classes", preprocess=to_rows,
    bigbio_schema='text',
    card_notes=(("Validation = the 535 training rows with the smallest sha256('gad-validation:' + "
         "id); train 4261, validation 535, test 534 (BLURB's test)."),),
    former_max_length=128)
