"""biosses: biomedical sentence-pair similarity, regression on 0–4; Pearson (primary), Spearman."""

from runner.data.tasks.spec import Source, TaskSpec


def to_rows(raw: dict[str, list[dict]], fmt: str) -> dict[str, list[dict]]:
    out = {}
    for split, recs in raw.items():
        if fmt == "seed-pickle":   # {id, sentence1, sentence2, score, ...}
            out[split] = [{"id": str(r["id"]), "text_1": r["sentence1"], "text_2": r["sentence2"],
                           "label": float(r["score"])} for r in recs]
        else:                      # BigBIO pairs: {id, document_id, text_1, text_2, label: "4.0"}
            out[split] = [{"id": str(r["id"]), "text_1": r["text_1"], "text_2": r["text_2"],
                           "label": float(r["label"])} for r in recs]
    return out


SPEC = TaskSpec(
    name="biosses", kind="regression", labels=(), text_fields=("text_1", "text_2"),
    label_field="label", primary_metric="pearson",
    metrics=("pearson", "spearman"), held_out=False,
    source="BIOSSES sentence-pair similarity 0-4 (BigBIO, BLURB split 64/16/20)",
    sources=(Source("bigbio", "bigbio/biosses"),
             Source("seed-pickle", "seed-pickle/biosses.pkl"),
             Source("hf", hf_path="bigbio/biosses", hf_name="biosses_bigbio_pairs")),
    stat_kind="pairs", preprocess=to_rows,
    bigbio_schema='pairs',
    former_max_length=128)
