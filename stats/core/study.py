"""The loaded study: its options, its jobs grouped into systems, and the checks that make it
publishable.

A *system* is (model, strategy, experiment, task) with one run per seed; a multi-task
experiment with several task sets is several systems ("<experiment>[a+b]"). :class:`Study`
reads each job's predictions on first use (``stats.read.results.read_predictions`` does the
parquet I/O) and refuses a job whose stored metrics its predictions do not reproduce, or a
system whose jobs differ in anything but the seed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mtl_contract.schema import MT, TC
from stats.core import significance
from stats.core.metrics import metric_names, point_metrics
from stats.read.results import (
    JobResult,
    NotRun,
    PredictionsUnavailable,
    Skipped,
    read_predictions,
    tidy,
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
    # interval excludes 0 exactly when its unadjusted paired-t p is below alpha
    level: float | None = None
    # RQ5's equivalence margin δ in metric units (0.01 = 1 point): "data exposure" needs the
    # seed-level (1 − 2α) interval of MT − TC inside ±δ (two one-sided tests)
    equivalence_margin: float = significance.EQUIVALENCE_MARGIN

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
    # token-controlled jobs the runner recorded as not run (parity out of reach of the epoch cap)
    not_run: list[NotRun] = field(default_factory=list)
    # results that must not be published (see :meth:`verify`): one line each
    refused: list[str] = field(default_factory=list)
    _predictions: dict[tuple[str, str], Any] = field(default_factory=dict)
    _frame: pd.DataFrame | None = None
    # task -> the shared resamples of stats.core.study_bootstrap.task_resamples (None: none)
    resample_cache: dict[str, Any] = field(default_factory=dict)

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
        of truth: every stored metric they can recompute must agree with them,
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
