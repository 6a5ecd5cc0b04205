"""Test metrics recomputed from per-example sufficient statistics, vectorised over resamples.

Exactly the formulas of ``results/README.md``:

* ``counts`` (columns tp, fp, fn; NER entities, HoC abstracts):
  ``f1 = micro_f1 = 2tp/(2tp+fp+fn)``, ``precision = tp/(tp+fp)``, ``recall = tp/(tp+fn)``,
  each 0 where its denominator is 0.
* ``classes`` (gold_id, pred_id; scored classes S): ``accuracy = mean(gold==pred)``;
  per c in S ``f1_c = 2tp_c/(2tp_c+fp_c+fn_c)``; ``macro_f1 = mean_c f1_c``;
  ``micro_f1 = f1 = 2Σtp_c/(2Σtp_c+Σfp_c+Σfn_c)``; ``f1_<label> = f1_c``.
* ``pairs`` (gold_value, pred_value): Pearson and Spearman (scipy definitions; Spearman is
  Pearson of average ranks).

For ``counts`` and ``classes`` a resample's metric depends only on column sums of a per-unit
matrix ``X`` (n units × k statistics), so B resamples are ``W @ X`` with W the B × n matrix of
how often each unit was drawn. ``pairs`` needs the values themselves (ranks change).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num/den, 0 where den == 0 (the README's convention for empty denominators)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def sufficient_matrix(kind: str, spec: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    """Per-unit statistics whose column sums determine every metric (n × k, float64).

    counts: [tp, fp, fn]. classes: [correct, tp_c, fp_c, fn_c for each c in scored].
    pairs: [gold_value, pred_value] (not sum-sufficient; see :func:`pairs_metrics`).
    """
    if kind == "counts":
        return frame[["tp", "fp", "fn"]].to_numpy(dtype=np.float64)
    if kind == "classes":
        gold = frame["gold_id"].to_numpy(dtype=np.int64)
        pred = frame["pred_id"].to_numpy(dtype=np.int64)
        cols = [gold == pred]
        for c in spec["scored"]:
            cols += [(gold == c) & (pred == c), (pred == c) & (gold != c), (gold == c) & (pred != c)]
        return np.column_stack(cols).astype(np.float64)
    if kind == "pairs":
        return frame[["gold_value", "pred_value"]].to_numpy(dtype=np.float64)
    raise ValueError(f"unknown stat_spec kind {kind!r}")


def metric_names(kind: str, spec: dict[str, Any]) -> tuple[str, ...]:
    """The metrics recomputable from this kind's statistics."""
    if kind == "counts":
        return ("f1", "micro_f1", "precision", "recall")
    if kind == "classes":
        labels = spec["labels"]
        return ("accuracy", "macro_f1", "micro_f1", "f1") + tuple(
            f"f1_{labels[c]}" for c in spec["scored"])
    if kind == "pairs":
        return ("pearson", "spearman")
    raise ValueError(f"unknown stat_spec kind {kind!r}")


def metrics_from_sums(kind: str, spec: dict[str, Any], sums: np.ndarray, n_units: int,
                      names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Metrics from column sums ``sums`` (shape (..., k)); each result has shape ``(...)``.

    ``n_units`` is the number of units summed (accuracy's denominator; a resample keeps n).
    """
    sums = np.asarray(sums, dtype=np.float64)
    wanted = names or metric_names(kind, spec)
    out: dict[str, np.ndarray] = {}
    if kind == "counts":
        tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        table = {"f1": f1, "micro_f1": f1, "precision": lambda: _ratio(tp, tp + fp),
                 "recall": lambda: _ratio(tp, tp + fn)}
    elif kind == "classes":
        k = len(spec["scored"])
        tp = sums[..., 1::3][..., :k]
        fp = sums[..., 2::3][..., :k]
        fn = sums[..., 3::3][..., :k]
        per_class = _ratio(2 * tp, 2 * tp + fp + fn)
        micro = _ratio(2 * tp.sum(-1), 2 * tp.sum(-1) + fp.sum(-1) + fn.sum(-1))
        table = {"accuracy": lambda: sums[..., 0] / n_units,
                 "macro_f1": lambda: per_class.mean(-1), "micro_f1": micro, "f1": micro}
        for j, c in enumerate(spec["scored"]):
            table[f"f1_{spec['labels'][c]}"] = per_class[..., j]
    else:
        raise ValueError(f"metrics_from_sums does not handle kind {kind!r}")
    for name in wanted:
        if name not in table:
            raise KeyError(f"metric {name!r} cannot be computed from kind {kind!r}")
        value = table[name]
        out[name] = value() if callable(value) else value
    return out


def pairs_metrics(gold: np.ndarray, pred: np.ndarray,
                  names: tuple[str, ...] = ("pearson", "spearman")) -> dict[str, np.ndarray]:
    """Pearson r and Spearman rho along the last axis (rows = resamples).

    r = Σ(x−x̄)(y−ȳ) / sqrt(Σ(x−x̄)² Σ(y−ȳ)²); rho = r of average ranks (ties averaged, as
    scipy). A constant row has no correlation: NaN, as scipy returns.
    """
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "pearson":
            x, y = gold, pred
        elif name == "spearman":
            x = rankdata(gold, axis=-1)
            y = rankdata(pred, axis=-1)
        else:
            raise KeyError(f"metric {name!r} cannot be computed from kind 'pairs'")
        xc = x - x.mean(-1, keepdims=True)
        yc = y - y.mean(-1, keepdims=True)
        den = np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
        num = (xc * yc).sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        out[name] = np.clip(r, -1.0, 1.0)
    return out


def point_metrics(kind: str, spec: dict[str, Any], frame: pd.DataFrame) -> dict[str, float]:
    """Every metric of one predictions frame (no resampling)."""
    x = sufficient_matrix(kind, spec, frame)
    if kind == "pairs":
        res = pairs_metrics(x[:, 0], x[:, 1])
    else:
        res = metrics_from_sums(kind, spec, x.sum(0), len(frame))
    return {k: float(v) for k, v in res.items()}
