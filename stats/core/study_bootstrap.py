"""The test-unit bootstrap of systems and matched pairs: a system's seed-mean metric and a
pair's mean difference, every seed resampled on the same test units.

Resamples are drawn once per task for every job that ran it (:func:`task_resamples`) when
the jobs' predictions allow; otherwise each call resamples its own jobs.  Both paths use the
same seed and number of units, so they give the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stats.core import significance
from stats.core.bootstrap import Block, observed, resample_blocks
from stats.core.metrics import metric_names, sufficient_matrix
from stats.core.study import Study
from stats.read.results import JobResult


def _blocks(study: Study, jobs: list[JobResult], task: str):
    """Blocks aligned on the test units common to all jobs, or a reason string."""
    loaded = []
    for job in jobs:
        pred = study.predictions(job, task)
        if isinstance(pred, str):
            return pred
        loaded.append(pred)
    metric = jobs[0].per_task[task].primary_metric
    kinds = {p[0] for p in loaded}
    if len(kinds) > 1:
        return f"{task}: predictions of different stat_spec kinds {sorted(kinds)}"
    kind = loaded[0][0]
    if metric not in metric_names(kind, loaded[0][1]):
        return f"{task}: {metric} cannot be recomputed from stat_spec kind {kind!r}"
    common = loaded[0][2].index
    for _, _, frame in loaded[1:]:
        common = common.intersection(frame.index, sort=False)
    if len(common) == 0:
        return f"{task}: the jobs' predictions share no unit_id"
    common = common.sort_values()
    blocks = [Block(kind, spec, metric, sufficient_matrix(kind, spec, frame.loc[common]))
              for kind, spec, frame in loaded]
    sizes = {len(p[2]) for p in loaded}
    if len(sizes) > 1 or sizes.pop() != len(common):
        study.note(f"{task}: predictions cover different units; bootstrap uses the "
                   f"{len(common)} units common to jobs {[j.job_id for j in jobs]}")
    return blocks


# blocks resampled together when a task's resamples are cached: bounds memory to about
# GROUP_BLOCKS × n × k × 8 bytes (ChemProt: 12 × 16k units × 16 statistics ≈ 25 MB)
GROUP_BLOCKS = 12


def task_resamples(study: Study, task: str):
    """Every job's primary metric on the full test set and on each resample, for one task.

    All calls use the same seed and n, so the draws are the same whether a system is
    resampled alone or here with the whole task: this only saves repeating the draws
    (a study resamples each test set for up to five systems and pairs). Built only when
    every job's predictions for the task are usable, of one kind and metric, and cover the
    same units; otherwise None and callers resample their own jobs.
    """
    if task in study.resample_cache:
        return study.resample_cache[task]
    jobs = sorted((j for j in study.jobs if task in j.per_task), key=lambda j: j.job_id)
    loaded = [study.predictions(j, task) for j in jobs]
    cache = None
    if jobs and not any(isinstance(p, str) for p in loaded):
        metrics = {j.per_task[task].primary_metric for j in jobs}
        kinds = {p[0] for p in loaded}
        common = loaded[0][2].index.sort_values()
        if (len(metrics) == 1 and len(kinds) == 1
                and metrics.pop() in metric_names(loaded[0][0], loaded[0][1])
                and all(p[2].index.sort_values().equals(common) for p in loaded)):
            obs, res = [], []
            for start in range(0, len(jobs), GROUP_BLOCKS):
                group = [Block(kind, spec, jobs[start + i].per_task[task].primary_metric,
                               sufficient_matrix(kind, spec, frame.loc[common]))
                         for i, (kind, spec, frame) in enumerate(loaded[start:start + GROUP_BLOCKS])]
                obs.append(observed(group))
                res.append(resample_blocks(group, study.options.resamples, study.options.seed))
            cache = ({j.job_id: i for i, j in enumerate(jobs)}, np.concatenate(obs),
                     np.hstack(res), len(common))
    study.resample_cache[task] = cache
    return cache


def _resampled(study: Study, jobs: list[JobResult], task: str):
    """(observed (k,), resampled (B, k), n_units) of the jobs' metric, or a reason string."""
    cache = task_resamples(study, task)
    if cache is not None and all(j.job_id in cache[0] for j in jobs):
        cols = [cache[0][j.job_id] for j in jobs]
        return cache[1][cols], cache[2][:, cols], cache[3]
    blocks = _blocks(study, jobs, task)
    if isinstance(blocks, str):
        return blocks
    return (observed(blocks), resample_blocks(blocks, study.options.resamples,
                                              study.options.seed), blocks[0].x.shape[0])


def system_bootstrap(study: Study, jobs: list[JobResult], task: str) -> dict[str, Any]:
    """Percentile CI of the seed-mean primary metric over test units (all seeds resampled
    on the same units): point = mean over seeds of the metric on the full test set."""
    opt = study.options
    base = {"point": None, "low": None, "high": None, "n_units": None,
            "resamples": opt.resamples, "seed": opt.seed, "level": opt.level}
    got = _resampled(study, jobs, task)
    if isinstance(got, str):
        return {**base, "reason": got}
    obs, res, n_units = got
    dist = res.mean(axis=1)
    ci = significance.percentile_interval(dist, opt.level)
    point = float(obs.mean())
    if ci is None:
        return {**base, "point": point, "n_units": n_units,
                "reason": "metric undefined on every resample"}
    return {**base, "point": point, "low": ci[0], "high": ci[1], "n_units": n_units,
            "reason": None}


def paired_bootstrap(study: Study, pairs: list[tuple[JobResult, JobResult]],
                     task: str) -> dict[str, Any]:
    """Paired bootstrap of δ = mean over matched seeds of (metric_A − metric_B), both systems
    on the same resampled units; percentile CI and Berg-Kirkpatrick one-sided p (A > B)."""
    opt = study.options
    base = {"delta": None, "low": None, "high": None, "p_bk": None, "n_units": None,
            "n_pairs": len(pairs), "resamples": opt.resamples, "seed": opt.seed,
            "level": opt.level}
    if not pairs:
        return {**base, "reason": "no matched pair"}
    got = _resampled(study, [a for a, _ in pairs] + [b for _, b in pairs], task)
    if isinstance(got, str):
        return {**base, "reason": got}
    obs, res, n_units = got
    k = len(pairs)
    delta = float(obs[:k].mean() - obs[k:].mean())
    dist = res[:, :k].mean(axis=1) - res[:, k:].mean(axis=1)
    ci = significance.percentile_interval(dist, opt.level)
    if ci is None:
        return {**base, "delta": delta, "reason": "metric undefined on every resample"}
    return {**base, "delta": delta, "low": ci[0], "high": ci[1],
            "p_bk": significance.berg_kirkpatrick_p(delta, dist), "n_units": n_units,
            "reason": None}
