"""From loaded jobs to the study's comparisons: systems, matched units, RQ1 and RQ5.

A *system* is (model, strategy, experiment, task) with one run per seed. A *matched unit*
is the same model, task and seed under two strategies: single_task vs multi_task (the same
seed in a single-task and a multi-task experiment), and multi_task vs token_controlled
(the token-controlled job's ``parity.reference_job`` names its multi-task job). A
multi-task job contributes one row per task of its ``per_task``. A token-controlled system
is its experiment (plus its reference's task set where the multi-task experiment has
several), so RQ5 makes one comparison per (model, multi-task system, token-controlled
system), over the seeds its ST, MT and TC systems all ran (issue 12).

Everything returned is plain dicts/lists (what statistics.json stores); ``None`` plus a
``reason`` marks what is not applicable.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mtl_contract.schema import MT, ST, TC
from stats.core import controls, tests
from stats.core.bootstrap import Block, observed, resample_blocks
from stats.core.metrics import metric_names, point_metrics, sufficient_matrix
from stats.read.results import (
    JobResult,
    NotRun,
    PredictionsUnavailable,
    Skipped,
    read_predictions,
    tidy,
    token_efficiency,
)

# predictions recomputed from sufficient statistics must reproduce result.json to this
# absolute tolerance (metrics are in [0, 1]; JSON floats round-trip exactly)
CONSISTENCY_TOL = 1e-6


@dataclass(frozen=True)
class Options:
    alpha: float = 0.05
    resamples: int = 10_000  # bootstrap resamples over test units (and over seeds for RQ1)
    seed: int = 0  # the bootstrap generator's seed
    parity_threshold: float = 0.05  # |MT − TC| / MT below this is token parity
    # confidence level of every interval; None: 1 − alpha, so that a printed seed-level
    # interval excludes 0 exactly when its unadjusted paired-t p is below alpha (issue 24)
    level: float | None = None
    # RQ5's equivalence margin δ in metric units (0.01 = 1 point): "data exposure" needs the
    # seed-level (1 − 2α) interval of MT − TC inside ±δ (issue 24)
    equivalence_margin: float = tests.EQUIVALENCE_MARGIN

    def __post_init__(self) -> None:
        if self.level is None:
            object.__setattr__(self, "level", 1 - self.alpha)


@dataclass
class Study:
    """The loaded results plus caches; the input every section gets."""

    jobs: list[JobResult]
    skipped: list[Skipped]
    options: Options
    notes: list[str] = field(default_factory=list)
    # token-controlled jobs the runner recorded as not run (parity unreachable, issue 28)
    not_run: list[NotRun] = field(default_factory=list)
    # results that must not be published (issue 25; see :meth:`verify`): one line each
    refused: list[str] = field(default_factory=list)
    _predictions: dict[tuple[str, str], Any] = field(default_factory=dict)
    _frame: pd.DataFrame | None = None
    _task_resamples: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {j.job_id: j for j in self.jobs}
        # A multi-task experiment with several task sets (the methodology's four
        # combinations in one experiment) is several systems: BC2GM trained with JNLPBA is
        # not BC2GM trained with all eight.  Such jobs are named "<experiment>[a+b]".
        sets: dict[str, set[tuple[str, ...]]] = defaultdict(set)
        for j in self.jobs:
            if j.strategy == MT:
                sets[j.experiment].add(tuple(j.tasks))
        self.label = {j.job_id: (f"{j.experiment}[{'+'.join(j.tasks)}]"
                                 if j.strategy == MT and len(sets[j.experiment]) > 1
                                 else j.experiment) for j in self.jobs}
        # A token-controlled job of such an experiment takes its reference's task set: its
        # bc2gm system paired with [bc2gm+jnlpba] is not the one paired with all eight.
        for j in self.jobs:
            ref = self.by_id.get((j.parity or {}).get("reference_job")) \
                if j.strategy == TC else None
            if ref is not None and ref.strategy == MT and self.label[ref.job_id] != ref.experiment:
                self.label[j.job_id] = f"{j.experiment}[{'+'.join(ref.tasks)}]"

    def system(self, job: JobResult) -> str:
        """The experiment name a job's system goes by (task set added where needed)."""
        return self.label.get(job.job_id, job.experiment)

    @property
    def frame(self) -> pd.DataFrame:
        """The tidy table (one row per job and task), built on first use."""
        if self._frame is None:
            self._frame = tidy(self.jobs)
        return self._frame

    def runs(self, model: str, strategy: str, experiment: str, task: str) -> dict[int, JobResult]:
        """seed -> job of one system (first job id wins if a seed was run twice)."""
        out: dict[int, JobResult] = {}
        for job in sorted(self.jobs, key=lambda j: j.job_id):
            if (job.model, job.strategy, self.system(job)) == (model, strategy, experiment) \
                    and task in job.per_task:
                if job.seed in out:
                    self.note(f"{model}/{experiment}/{task}: seed {job.seed} run twice "
                              f"({out[job.seed].job_id}, {job.job_id}); using {out[job.seed].job_id}")
                    continue
                out[job.seed] = job
        return out

    def experiments(self, model: str, strategy: str) -> list[str]:
        return sorted({self.system(j) for j in self.jobs
                       if j.model == model and j.strategy == strategy})

    def tasks_of(self, model: str, strategy: str, experiment: str) -> list[str]:
        return sorted({t for j in self.jobs if (j.model, j.strategy, self.system(j))
                       == (model, strategy, experiment) for t in j.tasks})

    def models(self) -> list[str]:
        return sorted({j.model for j in self.jobs})

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def predictions(self, job: JobResult, task: str):
        """(kind, spec, frame) or a reason string; cached.  The predictions are the source
        of truth (issue 25): every stored metric they can recompute must agree with them,
        and a file whose result.json recorded its SHA256 must still have it; otherwise the
        job is refused (:attr:`refused`).  A result without a digest (written before them)
        whose predictions cannot be read keeps its recorded metrics and is listed as skipped."""
        key = (job.job_id, task)
        if key not in self._predictions:
            tr = job.per_task[task]
            try:
                kind, spec, frame = read_predictions(tr)
            except PredictionsUnavailable as err:
                reason = f"{task} predictions of job {job.job_id} unusable: {err}"
                if tr.predictions_sha256 is not None:
                    self.refused.append(f"{tr.predictions_path}: job {job.job_id}, task {task}: "
                                        f"{err}")
                else:
                    self.skipped.append(Skipped(str(tr.predictions_path or job.path),
                                                f"predictions unusable: {err}"))
                self._predictions[key] = reason
                return reason
            self._check_metrics(job, task, tr.metrics, kind, spec, frame, "metrics")
            self._predictions[key] = (kind, spec, frame)
        return self._predictions[key]

    def _check_metrics(self, job: JobResult, task: str, stored: dict[str, float], kind: str,
                       spec: dict[str, Any], frame: pd.DataFrame, where: str) -> None:
        """Refuse the job when a stored metric differs from its predictions' (the first such
        metric, in the recomputable metrics' order, is named)."""
        recomputed = point_metrics(kind, spec, frame)
        for name in metric_names(kind, spec):
            if name not in stored or not math.isfinite(recomputed[name]):
                continue
            if abs(recomputed[name] - stored[name]) > CONSISTENCY_TOL:
                self.refused.append(
                    f"{job.path}: job {job.job_id}: per_task.{task}.{where}.{name} = "
                    f"{stored[name]:.6f} but its predictions give {recomputed[name]:.6f} "
                    "(a metric edited after the job, or predictions of another run)")
                return

    def verify(self) -> list[str]:
        """Read every job's predictions (final and best-validation weights) and check them
        against its result, and check that every system is one configuration; return the
        refusals (also in :attr:`refused`)."""
        for job in sorted(self.jobs, key=lambda j: j.job_id):
            for task in job.tasks:
                self.predictions(job, task)
                tr = job.per_task[task]
                if tr.best_weights is None or tr.best_predictions_path is None:
                    continue
                try:
                    kind, spec, frame = read_predictions(tr, best_weights=True)
                except PredictionsUnavailable as err:
                    if tr.best_predictions_sha256 is not None:
                        self.refused.append(f"{tr.best_predictions_path}: job {job.job_id}, "
                                            f"task {task} (best weights): {err}")
                    continue
                self._check_metrics(job, task, tr.best_weights, kind, spec, frame,
                                    "best_weights.metrics")
        self.refused.extend(configuration_conflicts(self.jobs, self.system))
        return self.refused


# config entries that differ between the seeds of one configuration: a token-controlled
# job's target is its own reference's tokens, a parameter-matched adapter names its own
# matched multi-task job and that job's trainable count
PER_SEED_SETTINGS = ("config.target_tokens", "config.adapter.matched_to.job_id",
                     "config.adapter.matched_to.target_trainable",
                     "config.adapter.matched_to.trainable",
                     "config.adapter.matched_to.relative_gap")


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for k in sorted(value, key=str):
            _flat(f"{prefix}.{k}", value[k], out)
    else:
        out[prefix] = value
    return out


def job_settings(job: JobResult) -> dict[str, Any]:
    """Everything that makes a job's configuration, as ``{dotted key: value}``: its
    config (less :data:`PER_SEED_SETTINGS`), model, tokenizer and the data it read."""
    out = _flat("config", job.config, {})
    for key in PER_SEED_SETTINGS:
        out.pop(key, None)
    out["model_name"] = job.model_name
    out["tokenizer"] = job.tokenizer
    return _flat("provenance.data_checksums", job.data_checksums, out)


def configuration_conflicts(jobs: list[JobResult], system) -> list[str]:
    """One line per system (model, strategy, ``system(job)``, task set) whose jobs differ
    in anything but the seed: two configurations would be pooled as seeds of one system
    (two studies in one folder, a manifest's defaults edited between runs).  Names both
    job ids and the first differing setting."""
    first: dict[tuple, tuple[JobResult, dict[str, Any]]] = {}
    out = []
    for job in sorted(jobs, key=lambda j: (j.seed, j.job_id)):
        key = (job.model, job.strategy, system(job), job.tasks)
        settings = job_settings(job)
        if key not in first:
            first[key] = (job, settings)
            continue
        other, theirs = first[key]
        differing = sorted(k for k in set(settings) | set(theirs)
                           if settings.get(k, "<absent>") != theirs.get(k, "<absent>"))
        if differing:
            k = differing[0]
            out.append(f"{job.path}: jobs {other.job_id} (seed {other.seed}) and {job.job_id} "
                       f"(seed {job.seed}) are both {job.model}/{system(job)} "
                       f"[{'+'.join(job.tasks)}] but differ in {k} ({theirs.get(k, '<absent>')!r}"
                       f" vs {settings.get(k, '<absent>')!r}): two configurations under one "
                       "system name; give their results folders separately or rename one "
                       "experiment")
    return out


def _values(runs: dict[int, JobResult], task: str) -> list[float]:
    return [runs[s].per_task[task].metrics[runs[s].per_task[task].primary_metric]
            for s in sorted(runs)]


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


def _task_resamples(study: Study, task: str):
    """Every job's primary metric on the full test set and on each resample, for one task.

    All calls use the same seed and n, so the draws are the same whether a system is
    resampled alone or here with the whole task: this only saves repeating the draws
    (a study resamples each test set for up to five systems and pairs). Built only when
    every job's predictions for the task are usable, of one kind and metric, and cover the
    same units; otherwise None and callers resample their own jobs.
    """
    if task in study._task_resamples:
        return study._task_resamples[task]
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
    study._task_resamples[task] = cache
    return cache


def _resampled(study: Study, jobs: list[JobResult], task: str):
    """(observed (k,), resampled (B, k), n_units) of the jobs' metric, or a reason string."""
    cache = _task_resamples(study, task)
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
    ci = tests.percentile_interval(dist, opt.level)
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
    ci = tests.percentile_interval(dist, opt.level)
    if ci is None:
        return {**base, "delta": delta, "reason": "metric undefined on every resample"}
    return {**base, "delta": delta, "low": ci[0], "high": ci[1],
            "p_bk": tests.berg_kirkpatrick_p(delta, dist), "n_units": n_units,
            "reason": None}


# secondary metrics shown beside the primary one where every seed recorded them:
# NER's seqeval default (lenient) F1 and the methodology's accuracy (GAD, HoC, RE)
SECONDARY_METRICS = ("f1_lenient", "accuracy")


def _secondary(runs: dict[int, JobResult], task: str) -> dict[str, float]:
    """Mean over seeds of each secondary metric that every seed recorded (not the primary)."""
    out = {}
    for name in SECONDARY_METRICS:
        values = [j.per_task[task].metrics.get(name) for j in runs.values()]
        if values and None not in values and name != runs[min(runs)].per_task[task].primary_metric:
            out[name] = float(np.mean(values))
    return out


def system_summary(study: Study, model: str, strategy: str, experiment: str,
                   task: str, bootstrap: bool = True) -> dict[str, Any]:
    runs = study.runs(model, strategy, experiment, task)
    seeds = sorted(runs)
    values = _values(runs, task)
    interval = tests.seed_interval(values, study.options.level)
    effs = [token_efficiency(v, runs[s].token_count) for v, s in zip(values, seeds)]
    effs = [e for e in effs if e is not None]
    out = {
        "model": model, "strategy": strategy, "experiment": experiment, "task": task,
        "primary_metric": runs[seeds[0]].per_task[task].primary_metric if seeds else None,
        "seeds": seeds, "job_ids": [runs[s].job_id for s in seeds], "values": values,
        "mean": interval["mean"], "sd": interval["sd"], "seed_interval": interval,
        "token_count_mean": float(np.mean([runs[s].token_count for s in seeds])) if seeds else None,
        "token_efficiency_mean": float(np.mean(effs)) if effs else None,
        "tokenizers": sorted({str(runs[s].tokenizer) for s in seeds}),
        "secondary": _secondary(runs, task),
    }
    if bootstrap and seeds:
        out["bootstrap"] = system_bootstrap(study, [runs[s] for s in seeds], task)
    return out


def compare_pairs(study: Study, task: str, pairs: list[tuple[int, JobResult, JobResult]],
                  a_label: str, b_label: str, bootstrap: bool = True) -> dict[str, Any]:
    """All paired statistics of A − B over matched units ``(seed, job_a, job_b)``."""
    opt = study.options
    a = [ja.per_task[task].metrics[ja.per_task[task].primary_metric] for _, ja, _ in pairs]
    b = [jb.per_task[task].metrics[jb.per_task[task].primary_metric] for _, _, jb in pairs]
    t = tests.paired_t(a, b)
    out = {
        "task": task, "a": a_label, "b": b_label, "n": len(pairs),
        "primary_metric": pairs[0][1].per_task[task].primary_metric if pairs else None,
        "seeds": [s for s, _, _ in pairs],
        "job_ids_a": [ja.job_id for _, ja, _ in pairs],
        "job_ids_b": [jb.job_id for _, _, jb in pairs],
        "values_a": a, "values_b": b,
        "differences": [x - y for x, y in zip(a, b)],
        "mean_diff": t["mean_diff"],
        "diff_interval": tests.seed_interval([x - y for x, y in zip(a, b)], opt.level),
        "paired_t": t, "wilcoxon": tests.wilcoxon(a, b), "d_z": tests.cohens_dz(a, b),
        "pooled_d": tests.pooled_d(a, b),
        "mde": tests.min_detectable_effect(len(pairs), t["sd_diff"], opt.alpha),
        "p_holm": None, "significant": None,
        "reason": t["reason"],
    }
    if bootstrap:
        out["paired_bootstrap"] = paired_bootstrap(study, [(ja, jb) for _, ja, jb in pairs],
                                                   task)
    return out


def apply_holm(rows: list[dict[str, Any]], alpha: float) -> None:
    """Holm across the tasks of one comparison family (rows with a paired t p-value)."""
    adjusted = tests.holm([r.get("paired_t", {}).get("p") for r in rows], alpha)
    for row, p in zip(rows, adjusted):
        row["p_holm"] = p
        row["significant"] = None if p is None else bool(p < alpha)
        row["holm_family_size"] = sum(q is not None for q in adjusted)


def _na_row(model: str, task: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "task": task, "n": 0, "mean_diff": None, "p_holm": None,
            "significant": None, "reason": reason, **extra}


def multitask_comparisons(study: Study, bootstrap: bool = True) -> list[dict[str, Any]]:
    """RQ1 families: per model, each (single-task experiment, multi-task experiment) pair,
    one row per task (MT − ST), Holm across the family's tasks; plus n/a rows for tasks
    only one strategy ran."""
    families = []
    for model in study.models():
        st_exps = study.experiments(model, ST)
        mt_exps = study.experiments(model, MT)
        st_tasks = sorted({t for e in st_exps for t in study.tasks_of(model, ST, e)})
        mt_tasks = sorted({t for e in mt_exps for t in study.tasks_of(model, MT, e)})
        for e_m in mt_exps:
            for e_s in st_exps or [None]:
                rows = []
                for task in study.tasks_of(model, MT, e_m):
                    mt_runs = study.runs(model, MT, e_m, task)
                    metric = next(iter(mt_runs.values())).per_task[task].primary_metric
                    if e_s is None or task not in study.tasks_of(model, ST, e_s):
                        rows.append(_na_row(model, task, "only multi_task ran this task "
                                            "(no single-task baseline)", a=e_m, b=e_s,
                                            primary_metric=metric))
                        continue
                    st_runs = study.runs(model, ST, e_s, task)
                    seeds = sorted(set(mt_runs) & set(st_runs))
                    if not seeds:
                        rows.append(_na_row(model, task, "missing counterpart: no seed run by "
                                            f"both (single_task seeds {sorted(st_runs)}, "
                                            f"multi_task seeds {sorted(mt_runs)})",
                                            a=e_m, b=e_s, primary_metric=metric))
                        continue
                    row = compare_pairs(study, task, [(s, mt_runs[s], st_runs[s]) for s in seeds],
                                        e_m, e_s, bootstrap)
                    row["model"] = model
                    row["seeds_dropped"] = {name: sorted(set(runs) - set(seeds)) for name, runs
                                            in ((e_m, mt_runs), (e_s, st_runs))
                                            if set(runs) - set(seeds)}
                    rows.append(row)
                apply_holm(rows, study.options.alpha)
                families.append({"model": model, "single_task_experiment": e_s,
                                 "multi_task_experiment": e_m, "rows": rows,
                                 "summary": rq1_summary(study, rows)})
        only_st = [t for t in st_tasks if t not in mt_tasks]
        st_metric = {t: j.per_task[t].primary_metric for j in study.jobs
                     if j.model == model and j.strategy == ST for t in j.tasks}
        if only_st:
            rows = [_na_row(model, t, "only single_task ran this task (no multi-task job "
                            "includes it)", a=None, b=None, primary_metric=st_metric[t])
                    for t in only_st]
            families.append({"model": model, "single_task_experiment": None,
                             "multi_task_experiment": None, "rows": rows,
                             "summary": rq1_summary(study, rows)})
    return families


def rq1_summary(study: Study, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Tasks improved out of those compared, and the mean gain across tasks with its CI.

    mean gain = mean over tasks of the task's mean MT − ST difference over matched seeds;
    CI: percentile bootstrap over matched seeds within each task (stratified), so it is a
    seed-level interval; n/a when every task has a single matched seed.
    """
    opt = study.options
    compared = [r for r in rows if r.get("mean_diff") is not None and r.get("n", 0) > 0]
    out = {"tasks_run": len(rows), "tasks_compared": len(compared),
           "improved_significant": sum(1 for r in compared
                                       if r["significant"] and r["mean_diff"] > 0),
           "worse_significant": sum(1 for r in compared
                                    if r["significant"] and r["mean_diff"] < 0),
           "positive_point_estimate": sum(1 for r in compared if r["mean_diff"] > 0),
           "mean_gain": None, "low": None, "high": None, "methodology_pooled": None,
           "resamples": opt.resamples,
           "seed": opt.seed, "level": opt.level, "reason": None}
    if not compared:
        out["reason"] = "no task has a matched single-task and multi-task seed"
        return out
    out["methodology_pooled"] = methodology_pooled(compared)
    diffs = [np.asarray(r["differences"], dtype=float) for r in compared]
    out["mean_gain"] = float(np.mean([d.mean() for d in diffs]))
    if all(len(d) < 2 for d in diffs):
        out["reason"] = "one matched seed per task: no seed-level interval"
        return out
    rng = np.random.default_rng(opt.seed)
    total = np.zeros(opt.resamples)
    for d in diffs:
        idx = rng.integers(0, len(d), size=(opt.resamples, len(d)))
        total += d[idx].mean(axis=1)
    lo, hi = tests.percentile_interval(total / len(diffs), opt.level)
    out["low"], out["high"] = lo, hi
    return out


def methodology_pooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The methodology's "multi-task vs single-task" line (section 9.2): every compared
    task's matched-seed scores pooled into one MT and one ST sample, Student's t-test and
    Cohen's d with the pooled SD. It ignores the pairing and mixes the tasks' metrics (F1,
    Pearson, ...), so it sits beside the per-task paired tests, never instead of them."""
    a = [v for r in rows for v in r["values_a"]]
    b = [v for r in rows for v in r["values_b"]]
    d = tests.pooled_d(a, b)
    return {"tasks": [r["task"] for r in rows], "n_a": len(a), "n_b": len(b),
            "mean_diff": float(np.mean(a) - np.mean(b)) if a and b else None,
            "students_t": tests.students_t(a, b), "pooled_d": d,
            "d_above_0_3": None if d["d"] is None else bool(d["d"] > 0.3)}


TARGETS = ("total", "best")  # parity.target: the reference's token_count | tokens_at_best


def parity_target(tc: JobResult) -> str | None:
    """The token target a token-controlled job aimed at: "total" | "best"; None when not
    recorded (results written before issue 12 all aimed at the reference's token_count)."""
    target = (tc.parity or {}).get("target", tc.config.get("parity_target"))
    return target if target in TARGETS else None


def _mt_tokens_for(mt: JobResult, task: str, mode: str | None,
                   target: str | None = None) -> int | None:
    """The reference's tokens a token-controlled job must match (parity mode × target)."""
    if target == "best":
        return mt.tokens_per_task_at_best.get(task) if mode == "per_task" else mt.tokens_at_best
    if mode == "per_task":
        tr = mt.per_task.get(task)
        if tr is not None and tr.tokens is not None:
            return tr.tokens
        return mt.tokens_per_task.get(task)
    return mt.token_count


Pairs = dict[tuple[str, str, str, str], dict[int, tuple[JobResult, JobResult]]]


def _tc_pairs(study: Study) -> tuple[Pairs, list[dict[str, Any]]]:
    """(model, MT system, TC system, task) -> seed -> (mt_job, tc_job), and n/a rows for
    token-controlled jobs whose reference is not usable. Keyed by the TC system too, so two
    token-controlled experiments on one multi-task job stay two comparisons (issue 12)."""
    matched: Pairs = defaultdict(dict)
    orphans: list[dict[str, Any]] = []
    for tc in sorted((j for j in study.jobs if j.strategy == TC), key=lambda j: j.job_id):
        ref = tc.parity["reference_job"]
        mt = study.by_id.get(ref)
        for task in tc.tasks:
            if mt is None or mt.strategy != MT:
                orphans.append(_na_row(tc.model, task, f"missing counterpart: token-controlled "
                                       f"job {tc.job_id} references {ref}, which is not a "
                                       "multi-task job among the results",
                                       multi_task_experiment=None, verdict=tests.NOT_TESTABLE))
                continue
            if task not in mt.per_task:
                orphans.append(_na_row(tc.model, task, f"reference job {ref} did not train "
                                       f"{task}", multi_task_experiment=study.system(mt),
                                       verdict=tests.NOT_TESTABLE))
                continue
            key = (mt.model, study.system(mt), study.system(tc), task)
            if mt.seed in matched[key]:
                study.note(f"{key}: two jobs of one token-controlled system reference "
                           f"{mt.job_id}; using {matched[key][mt.seed][1].job_id}")
                continue
            matched[key][mt.seed] = (mt, tc)
    return matched, orphans


def _first_st(study: Study, model: str, task: str) -> str | None:
    """The model's first single-task experiment if it ran the task (Table RQ5's ST)."""
    st_exps = study.experiments(model, ST)
    if st_exps and task in study.tasks_of(model, ST, st_exps[0]):
        return st_exps[0]
    return None


def rq5_groups(study: Study, multitask: list[dict[str, Any]],
               systems: dict[tuple[str, str, str, str], dict[str, Any]] | None = None,
               bootstrap: bool = True) -> list[dict[str, Any]]:
    """RQ5 families: one per (model, multi-task system, token-controlled system) — each
    token-controlled experiment is its own comparison — with one row per task of the
    multi-task system: ST / MT / TC over the seeds all three share, token parity per matched
    pair (per tokenizer), MT − TC and MT − ST paired tests Holm-adjusted across the
    family's tasks, the verdict (:func:`stats.core.tests.verdict_rule`) and a sensitivity entry."""
    matched, orphans = _tc_pairs(study)
    rq1: dict[tuple[str, str, str], dict[str, Any]] = {}
    for f in multitask:
        if f["multi_task_experiment"] is not None:
            for r in f["rows"]:
                rq1.setdefault((f["model"], f["multi_task_experiment"], r["task"]), r)
    families = []
    for model in study.models():
        for e_m in study.experiments(model, MT):
            tcs = sorted({k[2] for k in matched if k[:2] == (model, e_m)})
            for e_t in tcs or [None]:
                families.append(_rq5_family(study, model, e_m, e_t, matched, rq1,
                                            systems or {}, bootstrap))
    for fam in families:
        _add_sensitivity(study, fam, families)
    if orphans:
        families.append({"model": None, "multi_task_experiment": None,
                         "token_controlled_experiment": None, "parity_mode": None,
                         "parity_target": None, "rows": orphans})
    return families


def _one(values: set[Any]) -> Any:
    """The single value of a set, "mixed" for several, None for none."""
    return next(iter(values)) if len(values) == 1 else ("mixed" if values else None)


def _rq5_family(study: Study, model: str, e_m: str, e_t: str | None, matched: Pairs,
                rq1: dict[tuple[str, str, str], dict[str, Any]],
                systems: dict[tuple[str, str, str, str], dict[str, Any]],
                bootstrap: bool) -> dict[str, Any]:
    opt = study.options
    rows = []
    for task in study.tasks_of(model, MT, e_m):
        pairs = matched.get((model, e_m, e_t, task), {}) if e_t else {}
        if pairs:
            rows.append(_rq5_row(study, model, e_m, e_t, task, pairs, systems, bootstrap))
        else:
            rows.append(_rq5_na_row(study, model, e_m, e_t, task, rq1, systems, bootstrap))
    compared = [r for r in rows if "parity_summary" in r]
    apply_holm(rows, opt.alpha)  # MT − TC
    apply_holm([r["mt_minus_st"] for r in compared if r["mt_minus_st"]], opt.alpha)
    # the control this token-controlled system ran (issue 26: one per comparison, never pooled)
    control = _one({controls.control_of(tc.config) for key, pairs in matched.items()
                    if key[:3] == (model, e_m, e_t) for _, tc in pairs.values()})
    for row in compared:
        ps, st = row["parity_summary"], row["mt_minus_st"] or {}
        row["verdict"], row["verdict_reason"] = tests.rq5_verdict(
            ps["holds"], ps["detail"], row["mean_diff"], row["p_holm"],
            st.get("mean_diff"), st.get("p_holm"), opt.alpha, row["equivalence"],
            row["parity_mode"])
        row["verdict"] = controls.verdict_words(row["verdict"], control)
    for row in compared:   # some seeds ran, others could not reach parity (issue 28)
        unreachable = _unreachable_text(study, model, e_m, e_t, row["task"])
        if unreachable:
            row["verdict"] = tests.NOT_TESTABLE
            row["verdict_reason"] = f"{unreachable}; the seeds that ran: {row['verdict_reason']}"
    pairs = [p for r in compared for p in r["parity"]]
    return {"model": model, "multi_task_experiment": e_m, "token_controlled_experiment": e_t,
            "control": control,
            "parity_mode": _one({p["mode"] for p in pairs}),
            "parity_target": _one({p["target"] for p in pairs} - {None}),
            "rows": rows}


def _shared_seeds(pairs: dict[int, tuple[JobResult, JobResult]],
                  st_runs: dict[int, JobResult], names: tuple[str, str, str | None],
                  runs: tuple[dict[int, JobResult], dict[int, JobResult]]):
    """Seeds every system of the comparison ran (the ST side only when it shares one), and
    per system the seeds it ran that the comparison leaves out."""
    seeds = sorted(pairs)
    if st_runs and any(s in st_runs for s in seeds):
        seeds = [s for s in seeds if s in st_runs]
    used = set(seeds)
    dropped = {name: sorted(set(r) - used) for name, r in
               zip(names, (runs[0], runs[1], st_runs)) if name and set(r) - used}
    return seeds, dropped


def _rq5_row(study: Study, model: str, e_m: str, e_t: str, task: str,
             pairs: dict[int, tuple[JobResult, JobResult]],
             systems: dict[tuple[str, str, str, str], dict[str, Any]],
             bootstrap: bool) -> dict[str, Any]:
    opt = study.options
    st_exp = _first_st(study, model, task)
    st_runs = study.runs(model, ST, st_exp, task) if st_exp else {}
    seeds, dropped = _shared_seeds(
        pairs, st_runs, (e_m, e_t, st_exp),
        (study.runs(model, MT, e_m, task), study.runs(model, TC, e_t, task)))
    row = compare_pairs(study, task, [(s, pairs[s][0], pairs[s][1]) for s in seeds],
                        e_m, e_t, bootstrap)
    st_pairs = [(s, pairs[s][0], st_runs[s]) for s in seeds if s in st_runs]
    mt_st = compare_pairs(study, task, st_pairs, e_m, st_exp, False) if st_pairs else None
    parity = [_pair_parity(task, s, *pairs[s], opt.parity_threshold) for s in seeds]
    st_key = (model, ST, st_exp, task)
    mode = _one({p["mode"] for p in parity})
    # the MT tokens TC was matched to (per-task parity: those MT spent on this task; target
    # "best": up to its best checkpoint): the token column and MT's efficiency both use them
    mt_tokens = float(np.mean([p["mt_tokens"] or 0 for p in parity]))
    row.update({
        "model": model, "multi_task_experiment": e_m, "token_controlled_experiment": e_t,
        "token_controlled_experiments": sorted({pairs[s][1].experiment for s in seeds}),
        "single_task_experiment": st_exp, "seeds_dropped": dropped,
        "parity": parity, "parity_summary": _parity_summary(parity, opt.parity_threshold),
        "single_task": (systems.get(st_key) or system_summary(study, *st_key, bootstrap))
        if st_exp else None,
        "mt_minus_st": mt_st,
        "st_mean": float(np.mean(mt_st["values_b"])) if mt_st else None,
        "mt_mean": float(np.mean(row["values_a"])), "tc_mean": float(np.mean(row["values_b"])),
        "parity_mode": mode,
        "equivalence": tests.equivalence(row["differences"], opt.equivalence_margin,
                                         opt.alpha),
        "mt_tokens_mean": mt_tokens,
        "tc_tokens_mean": float(np.mean([p["tc_tokens"] for p in parity])),
        # primary metric per million training tokens (methodology 7.3), of the seed means
        "mt_efficiency": token_efficiency(float(np.mean(row["values_a"])), round(mt_tokens)),
        "tc_efficiency": token_efficiency(
            float(np.mean(row["values_b"])),
            round(np.mean([pairs[s][1].token_count for s in seeds]))),
    })
    return row


def _rq5_na_row(study: Study, model: str, e_m: str, e_t: str | None, task: str,
                rq1: dict[tuple[str, str, str], dict[str, Any]],
                systems: dict[tuple[str, str, str, str], dict[str, Any]],
                bootstrap: bool) -> dict[str, Any]:
    """A task of the multi-task system that this token-controlled system did not pair:
    ST and MT are shown over the seeds both ran (RQ1's row), else MT over its own."""
    st_exp = _first_st(study, model, task)
    st_key = (model, ST, st_exp, task)
    st_sys = (systems.get(st_key) or system_summary(study, *st_key, bootstrap)) if st_exp else None
    mt_sys = systems.get((model, MT, e_m, task))
    st_row = rq1.get((model, e_m, task))
    if e_t is None:
        reason = ("only multi_task ran: no token-controlled job references this experiment "
                  "for this task")
    else:
        reason = (f"no job of token-controlled system {e_t} references {e_m} for {task} "
                  "(not planned, failed or not finished)")
    unreachable = _unreachable_text(study, model, e_m, e_t, task)
    shared = bool(st_row and st_row.get("n"))
    return _na_row(model, task, unreachable or reason, multi_task_experiment=e_m,
                   token_controlled_experiment=e_t, verdict=tests.NOT_TESTABLE,
                   single_task=st_sys, multi_task=mt_sys, mt_minus_st=st_row,
                   seeds=st_row["seeds"] if shared else (mt_sys or {}).get("seeds", []),
                   st_mean=float(np.mean(st_row["values_b"])) if shared else None,
                   mt_mean=float(np.mean(st_row["values_a"])) if shared
                   else (mt_sys or {}).get("mean"))


def _unreachable_text(study: Study, model: str, e_m: str, e_t: str | None,
                      task: str) -> str | None:
    """Why the token-controlled side of (model, e_m, e_t, task) was not run, when the runner
    recorded it so (``unreachable_parity = "skip"``), with the epochs it would need; None
    when it did not."""
    found = []
    for nr in study.not_run:
        ref = study.by_id.get(nr.reference_job)
        if (nr.model == model and nr.task == task and ref is not None
                and study.system(ref) == e_m
                and (e_t is None or e_t.split("[")[0] == nr.experiment)):
            found.append(nr)
    if not found:
        return None
    worst = max(found, key=lambda nr: nr.epochs_needed or 0.0)
    seeds = seed_list(sorted({nr.seed for nr in found}))
    return (f"{tests.NOT_TESTABLE}: the token-controlled job would need "
            f"{_epochs(worst.epochs_needed)} epochs of {task}, above its cap of "
            f"{worst.epoch_cap if worst.epoch_cap is not None else '?'} (not run; seeds "
            f"{seeds}, seed {worst.seed} shown)")


def _pair_parity(task: str, seed: int, mt: JobResult, tc: JobResult,
                 threshold: float) -> dict[str, Any]:
    """Token parity of one matched pair under the TC job's mode and target, with what the
    runner recorded about reaching it (issue 12; None where an older result lacks it)."""
    block = tc.parity or {}
    mode, target = block.get("mode", "total"), parity_target(tc)
    p = tests.token_parity(_mt_tokens_for(mt, task, mode, target), tc.token_count,
                           mt.tokenizer, tc.tokenizer, threshold)
    reached = block.get("reached")
    return {**p, "seed": seed, "mode": mode, "target": target, "mt_job": mt.job_id,
            "tc_job": tc.job_id, "reached": reached if isinstance(reached, bool) else None,
            **{k: block.get(k) for k in ("epochs_run", "epochs_needed", "epoch_cap",
                                         "stopped_because", "relative_gap")}}


def _epochs(x: Any) -> str:
    return "?" if not isinstance(x, (int, float)) else f"{x:,.1f}".removesuffix(".0")


def _not_reached_text(parity: list[dict[str, Any]]) -> str | None:
    """"parity not reached (gap X%, N epochs of M needed)" for the worst pair whose job hit
    its epoch cap; None when every pair reached its target (or did not say)."""
    short = [p for p in parity if p["reached"] is False]
    if not short:
        return None

    def gap(p: dict[str, Any]) -> float:
        g = p["gap"] if p["gap"] is not None else p.get("relative_gap")
        return g if isinstance(g, (int, float)) else float("nan")

    worst = max(short, key=lambda p: (not math.isnan(gap(p)), gap(p)))
    g = gap(worst)
    text = (f"parity not reached (gap {'?' if math.isnan(g) else f'{100 * g:.1f}'}%, "
            f"{_epochs(worst['epochs_run'])} epochs of {_epochs(worst['epochs_needed'])} "
            "needed)")
    if len(parity) > 1:
        text += f" in {len(short)} of {len(parity)} seeds (seed {worst['seed']} shown)"
    return text


def _parity_summary(parity: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Parity of a task's matched pairs: holds only if it holds for every pair; a pair whose
    token-controlled job stopped at its epoch cap (``reached`` false) never holds."""
    reasons = [p["reason"] for p in parity if p["reason"]]
    gaps = [p["gap"] for p in parity if p["gap"] is not None]
    max_gap = max(gaps) if gaps else None
    short = _not_reached_text(parity)
    if short:
        return {"holds": False, "max_gap": max_gap, "threshold": threshold, "detail": short,
                "reason": None, "not_reached": short}
    if reasons:
        return {"holds": None, "max_gap": max_gap, "threshold": threshold,
                "detail": reasons[0], "reason": reasons[0], "not_reached": None}
    holds = all(p["holds"] for p in parity)
    rel = "<" if holds else "≥"
    return {"holds": holds, "max_gap": max_gap, "threshold": threshold,
            "detail": f"max gap {100 * max_gap:.2f}% {rel} {100 * threshold:g}% over "
                      f"{len(parity)} pair(s)", "reason": None, "not_reached": None}


def _best_weights_alternative(study: Study, fam: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per task, MT − TC and the verdict with the TC side at its best-validation weights
    (``per_task[task].best_weights``), Holm across the family's tasks as in the primary
    analysis. Parity and MT − ST stay as they are: the TC job trained on the same tokens."""
    out: dict[str, dict[str, Any]] = {}
    for row in (r for r in fam["rows"] if "parity_summary" in r):
        best = [study.by_id[j].per_task[row["task"]].best_weights for j in row["job_ids_b"]]
        missing = [s for s, b in zip(row["seeds"], best) if b is None]
        if missing:
            out[row["task"]] = {"verdict": None, "reason": "best-validation metrics not "
                                f"recorded (seeds {seed_list(missing)})"}
            continue
        values = [b[row["primary_metric"]] for b in best]
        t = tests.paired_t(row["values_a"], values)
        out[row["task"]] = {"values_b": values, "mean_diff": t["mean_diff"], "paired_t": t,
                            "equivalence": tests.equivalence(
                                [a - b for a, b in zip(row["values_a"], values)],
                                study.options.equivalence_margin, study.options.alpha),
                            "reason": t["reason"]}
    entries = [e for e in out.values() if "paired_t" in e]
    apply_holm(entries, study.options.alpha)
    for row in (r for r in fam["rows"] if r["task"] in out and "paired_t" in out[r["task"]]):
        e, st = out[row["task"]], row["mt_minus_st"] or {}
        e["verdict"], e["verdict_reason"] = tests.rq5_verdict(
            row["parity_summary"]["holds"], row["parity_summary"]["detail"], e["mean_diff"],
            e["p_holm"], st.get("mean_diff"), st.get("p_holm"), study.options.alpha,
            e["equivalence"], row["parity_mode"])
        e["verdict"] = controls.verdict_words(e["verdict"], fam.get("control"))
    return out


def _other_targets(fam: dict[str, Any], families: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Token-controlled systems on the same multi-task system, model, parity mode and control
    that aimed at the other target ("total" vs "best")."""
    if fam["parity_target"] not in TARGETS:
        return []
    return [o for o in families if o is not fam and o["model"] == fam["model"]
            and o["multi_task_experiment"] == fam["multi_task_experiment"]
            and o["parity_mode"] == fam["parity_mode"] and o.get("control") == fam.get("control")
            and o["parity_target"] in TARGETS and o["parity_target"] != fam["parity_target"]]


def _add_sensitivity(study: Study, fam: dict[str, Any], families: list[dict[str, Any]]) -> None:
    """Each compared row's ``sensitivity``: whether its verdict changes with the TC side at
    its best-validation weights, or under the other parity target (not a second verdict)."""
    best = _best_weights_alternative(study, fam)
    others = _other_targets(fam, families)
    for row in (r for r in fam["rows"] if "parity_summary" in r):
        alt = []
        for o in others:
            orow = next((r for r in o["rows"] if r["task"] == row["task"]), {})
            alt.append({"token_controlled_experiment": o["token_controlled_experiment"],
                        "target": o["parity_target"], "verdict": orow.get("verdict")
                        if "parity_summary" in orow else None,
                        "reason": orow.get("verdict_reason") or orow.get("reason")})
        verdicts = [best[row["task"]]["verdict"]] + [a["verdict"] for a in alt]
        row["sensitivity"] = {
            "best_weights": best[row["task"]], "other_targets": alt,
            "changes": any(v is not None and v != row["verdict"] for v in verdicts)}


def seed_list(seeds: list[int]) -> str:
    """Seeds as runs: [1, 2, 3, 5] -> "1–3, 5"."""
    out: list[list[int]] = []
    for s in sorted(seeds):
        if out and out[-1][1] == s - 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return ", ".join(str(a) if a == b else f"{a}–{b}" if b > a + 1 else f"{a}, {b}"
                     for a, b in out)


@dataclass
class Analysis:
    """What the core sections compute once and later sections may reuse."""

    systems: list[dict[str, Any]]
    multitask: list[dict[str, Any]]
    rq5: list[dict[str, Any]]


def analyse(study: Study, bootstrap: bool = True) -> Analysis:
    systems = []
    for model in study.models():
        for strategy in (ST, MT, TC):
            for exp in study.experiments(model, strategy):
                for task in study.tasks_of(model, strategy, exp):
                    systems.append(system_summary(study, model, strategy, exp, task, bootstrap))
    multitask = multitask_comparisons(study, bootstrap)
    index = {(x["model"], x["strategy"], x["experiment"], x["task"]): x for x in systems}
    rq5 = rq5_groups(study, multitask, index, bootstrap)
    return Analysis(systems=systems, multitask=multitask, rq5=rq5)
