"""Task metrics with per-unit sufficient statistics, so a resampled test set is re-scored by sums.

``evaluate(spec, split_df, preds)`` returns the metrics by name (results/README.md) and the
predictions frame written to ``predictions/<task>.parquet``: one row per test unit with
``unit_id``, ``gold``, ``pred`` (JSON strings) and the columns named by ``spec.stat_spec()``:

* ``counts`` (NER per sentence, HoC per abstract): ``tp``, ``fp``, ``fn``;
  precision = tp/(tp+fp), recall = tp/(tp+fn), f1 = 2tp/(2tp+fp+fn), 0 where a denominator is 0.
* ``classes``: ``gold_id``, ``pred_id`` (index into ``spec.labels``);
  per scored class c: f1_c = 2tp_c/(2tp_c+fp_c+fn_c); macro_f1 = mean over scored classes;
  micro_f1 = f1 = 2Σtp_c/(2Σtp_c+Σfp_c+Σfn_c) over the scored classes; accuracy = mean(gold==pred).
* ``pairs``: ``gold_value``, ``pred_value``; pearson / spearman as scipy defines them.

The aggregate NER metrics come from seqeval (``mode="strict", scheme=IOB2``) and the per-
sentence counts from the same strict IOB2 entity definition; tests check the two agree exactly.
NER also reports ``f1_lenient``, seqeval's default (conlleval-style) micro F1, where an ``I``
after ``O`` starts an entity -- the F1 BLURB-era papers report; secondary, not resampled.
HoC's ``accuracy`` is the share of abstracts whose predicted hallmark set equals the gold set
(sklearn's subset accuracy per abstract; recomputable as the rows with fp = fn = 0).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from runner.data.tasks.spec import TaskSpec

# seqeval wants typed tags; our corpora have one collapsed type, so every tag gets this one.
_SEQEVAL_TYPE = "ENT"
# Reported after a task's declared metrics (TaskSpec.metrics, which the data cards list):
# NER's lenient F1 is a comparison aid for BLURB-era papers, not part of the declaration.
SECONDARY_METRICS = {"ner": ("f1_lenient",)}


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def prf_from_counts(tp: int, fp: int, fn: int) -> dict[str, float]:
    """precision, recall, f1 from summed counts (0 where a denominator is 0)."""
    return {"f1": _ratio(2 * tp, 2 * tp + fp + fn), "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn)}


# --- NER --------------------------------------------------------------------------------------

def strict_iob2_entities(tags: Sequence[str]) -> set[tuple[int, int]]:
    """(start, end-exclusive) word spans of the entities of one sentence under strict IOB2.

    An entity is a ``B`` followed by any run of ``I``; an ``I`` that does not continue a
    ``B``/``I`` run starts nothing (strict mode does not repair it), exactly as seqeval's
    ``mode="strict", scheme=IOB2`` for a single entity type.
    """
    spans = set()
    start = None
    for i, tag in enumerate(tags):
        if tag == "B":
            if start is not None:
                spans.add((start, i))
            start = i
        elif tag == "I":
            if start is None:
                continue
        else:
            if start is not None:
                spans.add((start, i))
            start = None
    if start is not None:
        spans.add((start, len(tags)))
    return spans


def ner_counts(gold: Sequence[str], pred: Sequence[str]) -> tuple[int, int, int]:
    g, p = strict_iob2_entities(gold), strict_iob2_entities(pred)
    tp = len(g & p)
    return tp, len(p) - tp, len(g) - tp


def seqeval_prf(golds: list[list[str]], preds: list[list[str]]) -> dict[str, float]:
    """seqeval's entity-level micro precision / recall / F1, strict IOB2."""
    # seqeval's f1_score(mode="strict", scheme=IOB2) is this function with average="micro";
    # one call gives all three (each separate call re-extracts every entity: 3x the time).
    from seqeval.metrics.v1 import precision_recall_fscore_support
    from seqeval.scheme import IOB2

    def typed(seqs):
        return [[t if t == "O" else f"{t}-{_SEQEVAL_TYPE}" for t in s] for s in seqs]

    p, r, f, _ = precision_recall_fscore_support(typed(golds), typed(preds), average="micro",
                                                 scheme=IOB2, zero_division=0)
    return {"f1": float(f), "precision": float(p), "recall": float(r)}


def seqeval_lenient_f1(golds: list[list[str]], preds: list[list[str]]) -> float:
    """seqeval's default entity-level micro F1 (no mode, no scheme: conlleval's chunking, so
    an ``I`` that follows ``O`` starts an entity instead of being ignored)."""
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

    def typed(seqs):
        return [[t if t == "O" else f"{t}-{_SEQEVAL_TYPE}" for t in s] for s in seqs]

    _, _, f, _ = precision_recall_fscore_support(typed(golds), typed(preds), average="micro",
                                                 zero_division=0)
    return float(f)


def _evaluate_ner(spec, df, preds):
    golds = [list(t) for t in df["tags"]]
    preds = [list(p) for p in preds]
    for i, (g, p) in enumerate(zip(golds, preds)):
        if len(g) != len(p):
            raise ValueError(f"{spec.name}: unit {df['id'].iloc[i]}: {len(p)} predicted tags "
                             f"for {len(g)} words")
        bad = set(p) - set(spec.labels)
        if bad:
            raise ValueError(f"{spec.name}: unit {df['id'].iloc[i]}: unknown tag {min(bad)!r}")
    counts = np.array([ner_counts(g, p) for g, p in zip(golds, preds)], dtype=np.int64)
    counts = counts.reshape(-1, 3)
    frame = pd.DataFrame({
        "unit_id": df["id"].astype(str).to_numpy(),
        "gold": [json.dumps(g) for g in golds], "pred": [json.dumps(p) for p in preds],
        "tp": counts[:, 0], "fp": counts[:, 1], "fn": counts[:, 2]})
    metrics = seqeval_prf(golds, preds)
    metrics["f1_lenient"] = seqeval_lenient_f1(golds, preds)
    return metrics, frame


# --- classification ---------------------------------------------------------------------------

def metrics_from_classes(gold_id: np.ndarray, pred_id: np.ndarray, labels: Sequence[str],
                         scored: Sequence[int]) -> dict[str, float]:
    """accuracy, per scored class f1_<label>, macro_f1, micro_f1 (= f1) from the id columns."""
    gold_id, pred_id = np.asarray(gold_id), np.asarray(pred_id)
    out = {"accuracy": float(np.mean(gold_id == pred_id)) if len(gold_id) else 0.0}
    tps = fps = fns = 0
    f1s = []
    for c in scored:
        tp = int(np.sum((gold_id == c) & (pred_id == c)))
        fp = int(np.sum((pred_id == c) & (gold_id != c)))
        fn = int(np.sum((gold_id == c) & (pred_id != c)))
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        out[f"f1_{labels[c]}"] = f1
        f1s.append(f1)
        tps, fps, fns = tps + tp, fps + fp, fns + fn
    out["macro_f1"] = float(np.mean(f1s)) if f1s else 0.0
    out["micro_f1"] = out["f1"] = _ratio(2 * tps, 2 * tps + fps + fns)
    return out


def _evaluate_classification(spec, df, preds):
    index = {label: i for i, label in enumerate(spec.labels)}
    golds = [str(x) for x in df["label"]]
    preds = [str(x) for x in preds]
    for label in set(golds) | set(preds):
        if label not in index:
            raise ValueError(f"{spec.name}: label {label!r} not in {list(spec.labels)}")
    gold_id = np.array([index[g] for g in golds], dtype=np.int64)
    pred_id = np.array([index[p] for p in preds], dtype=np.int64)
    scored = spec.stat_spec()["scored"]
    every = metrics_from_classes(gold_id, pred_id, spec.labels, scored)
    metrics = {name: every[name] for name in spec.metrics}
    frame = pd.DataFrame({
        "unit_id": df["id"].astype(str).to_numpy(),
        "gold": [json.dumps(g) for g in golds], "pred": [json.dumps(p) for p in preds],
        "gold_id": gold_id, "pred_id": pred_id})
    return metrics, frame


# --- multi-label (HoC) ------------------------------------------------------------------------

def _label_counts(gold: set, pred: set) -> tuple[int, int, int]:
    tp = len(gold & pred)
    return tp, len(pred) - tp, len(gold) - tp


def _evaluate_multilabel(spec, df, preds):
    known = set(spec.labels)
    golds = [set(g) for g in df["labels"]]
    preds = [set(p) for p in preds]
    for p in preds:
        if p - known:
            raise ValueError(f"{spec.name}: unknown label {min(p - known)!r}")
    sent = np.array([_label_counts(g, p) for g, p in zip(golds, preds)], dtype=np.int64)
    sent = sent.reshape(-1, 3)
    # per abstract: union of its sentences' gold and predicted labels (BLURB), in first-seen order
    doc_gold: dict[str, set] = {}
    doc_pred: dict[str, set] = {}
    for doc, g, p in zip(df["document_id"].astype(str), golds, preds):
        doc_gold.setdefault(doc, set()).update(g)
        doc_pred.setdefault(doc, set()).update(p)
    docs = list(doc_gold)
    counts = np.array([_label_counts(doc_gold[d], doc_pred[d]) for d in docs],
                      dtype=np.int64).reshape(-1, 3)
    frame = pd.DataFrame({
        "unit_id": docs,
        "gold": [json.dumps(sorted(doc_gold[d])) for d in docs],
        "pred": [json.dumps(sorted(doc_pred[d])) for d in docs],
        "tp": counts[:, 0], "fp": counts[:, 1], "fn": counts[:, 2]})
    tp, fp, fn = counts.sum(axis=0)
    stp, sfp, sfn = sent.sum(axis=0)
    metrics = {"micro_f1": prf_from_counts(tp, fp, fn)["f1"],
               "sentence_micro_f1": prf_from_counts(stp, sfp, sfn)["f1"],
               "accuracy": float(np.mean((counts[:, 1] == 0) & (counts[:, 2] == 0)))
               if len(docs) else 0.0}
    return metrics, frame


# --- regression (BIOSSES) ---------------------------------------------------------------------

def correlations(gold: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """scipy's Pearson r and Spearman rho; 0.0 where undefined (a constant column), so a
    degenerate model scores as uncorrelated instead of writing NaN into result.json."""
    from scipy import stats

    gold, pred = np.asarray(gold, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if len(gold) < 2 or np.ptp(gold) == 0 or np.ptp(pred) == 0:
        return {"pearson": 0.0, "spearman": 0.0}
    r = float(stats.pearsonr(gold, pred)[0])
    rho = float(stats.spearmanr(gold, pred)[0])
    return {"pearson": 0.0 if math.isnan(r) else r, "spearman": 0.0 if math.isnan(rho) else rho}


def _evaluate_regression(spec, df, preds):
    gold = df["label"].to_numpy(dtype=np.float64)
    pred = np.asarray([float(x) for x in preds], dtype=np.float64)
    if not np.all(np.isfinite(pred)):
        raise ValueError(f"{spec.name}: non-finite prediction")
    frame = pd.DataFrame({
        "unit_id": df["id"].astype(str).to_numpy(),
        "gold": [json.dumps(float(g)) for g in gold], "pred": [json.dumps(float(p)) for p in pred],
        "gold_value": gold, "pred_value": pred})
    return correlations(gold, pred), frame


_BY_KIND = {"ner": _evaluate_ner, "classification": _evaluate_classification,
            "multilabel": _evaluate_multilabel, "regression": _evaluate_regression}


def evaluate(spec: TaskSpec, split_df: pd.DataFrame, preds: list) -> tuple[dict[str, float],
                                                                          pd.DataFrame]:
    """(metrics by name, predictions frame) for one task's split; see the module docstring.

    ``preds`` is one entry per row of ``split_df`` in its order: ner: word-level tag lists;
    classification: label strings; multilabel: label lists per sentence; regression: floats.
    ValueError if the lengths or labels do not fit the task (an engine bug, not bad input).
    """
    if len(preds) != len(split_df):
        raise ValueError(f"{spec.name}: {len(preds)} predictions for {len(split_df)} rows")
    metrics, frame = _BY_KIND[spec.kind](spec, split_df.reset_index(drop=True), list(preds))
    names = spec.metrics + SECONDARY_METRICS.get(spec.kind, ())
    return {name: float(metrics[name]) for name in names}, frame


def metrics_from_stats(spec: TaskSpec, frame: pd.DataFrame) -> dict[str, float]:
    """Every metric that the predictions frame's statistics determine, recomputed by sums
    (what ``stats`` does on a resample). HoC's sentence_micro_f1 is not in the frame."""
    kind = spec.stat_kind
    if kind == "counts":
        tp, fp, fn = (int(frame[c].sum()) for c in ("tp", "fp", "fn"))
        out = prf_from_counts(tp, fp, fn)
        out["micro_f1"] = out["f1"]
        return out
    if kind == "classes":
        return metrics_from_classes(frame["gold_id"].to_numpy(), frame["pred_id"].to_numpy(),
                                    spec.labels, spec.stat_spec()["scored"])
    return correlations(frame["gold_value"].to_numpy(), frame["pred_value"].to_numpy())
