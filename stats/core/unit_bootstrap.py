"""Paired bootstrap over test units for runs evaluated on the same test set (RQ2's held-out
comparisons, RQ4's gains): every run of both sides sees the same resampled units, joined on
``unit_id``; percentile interval, two-sided bootstrap p. Seeded: the same ``seed`` draws the
same resamples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from stats.core import significance
from stats.core.bootstrap import Block, observed, resample_blocks
from stats.core.metrics import metric_names, sufficient_matrix
from stats.read.results import PredictionsUnavailable, TaskResult, read_predictions


def _aligned_blocks(results: Sequence[TaskResult],
                   exclude: frozenset[str] = frozenset()) -> list[Block] | str:
    """Blocks on the test units common to all runs (joined on unit_id) less ``exclude``
    (the units a clean-unit analysis leaves out), or a reason."""
    loaded = []
    for tr in results:
        try:
            loaded.append(read_predictions(tr))
        except PredictionsUnavailable as err:
            return f"predictions unavailable: {err}"
    kinds = {k for k, _, _ in loaded}
    if len(kinds) != 1:
        return f"predictions of different stat_spec kinds {sorted(kinds)}"
    metric = results[0].primary_metric
    kind, spec, _ = loaded[0]
    if metric not in metric_names(kind, spec):
        return f"{metric} cannot be recomputed from stat_spec kind {kind!r}"
    common = loaded[0][2].index
    for _, _, frame in loaded[1:]:
        common = common.intersection(frame.index, sort=False)
    if len(common) == 0:
        return "the runs' predictions share no unit_id"
    common = common[~common.isin(exclude)]
    if len(common) == 0:
        return "every test unit the runs share overlaps the training data"
    common = common.sort_values()
    return [Block(k, s, metric, sufficient_matrix(k, s, f.loc[common])) for k, s, f in loaded]


def paired_unit_bootstrap(a: Sequence[TaskResult], b: Sequence[TaskResult], resamples: int,
                          seed: int, level: float = 0.95,
                          exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Paired bootstrap of Δ = mean(metric of a runs) − mean(metric of b runs) over test units.

    Every run of both sides is evaluated on the same resampled units (joined on unit_id,
    less ``exclude``). Percentile CI; two-sided p = min(1, 2 min(P*(Δ* ≤ 0), P*(Δ* ≥ 0))).
    """
    base = {"delta": None, "low": None, "high": None, "p_boot": None, "n_units": None,
            "resamples": resamples, "seed": seed, "level": level}
    if not a or not b:
        return {**base, "reason": "no matched runs"}
    blocks = _aligned_blocks(list(a) + list(b), exclude)
    if isinstance(blocks, str):
        return {**base, "reason": blocks}
    k = len(a)
    obs = observed(blocks)
    delta = float(obs[:k].mean() - obs[k:].mean())
    res = resample_blocks(blocks, resamples, seed)
    dist = res[:, :k].mean(axis=1) - res[:, k:].mean(axis=1)
    dist = dist[np.isfinite(dist)]
    ci = significance.percentile_interval(dist, level)
    if ci is None or not math.isfinite(delta):
        return {**base, "delta": delta if math.isfinite(delta) else None,
                "reason": "metric undefined on every resample"}
    p = min(1.0, 2.0 * min(float((dist <= 0).mean()), float((dist >= 0).mean())))
    return {**base, "delta": delta, "low": ci[0], "high": ci[1], "p_boot": p,
            "n_units": int(blocks[0].x.shape[0]), "reason": None}
