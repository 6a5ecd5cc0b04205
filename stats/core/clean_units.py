"""Clean units (the rule in words: ``stats.questions.contamination.RULE``): a comparison's clean test units of task B are those
that overlap no training unit of any task its multi-task job trained on -- B itself
included -- and both systems are scored on the same clean units so they stay paired.  The
predictions' per-unit sufficient statistics make this a filter: each job's metric is
recomputed on the clean rows (:func:`stats.core.metrics.point_metrics`), then the very same
paired tests, bootstrap, Holm correction and verdicts run on a copy of the study whose
predictions are cut to those rows (:class:`CleanStudy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from mtl_contract.schema import MT, ST, TC
from stats.core.analysis import Analysis
from stats.core.metrics import metric_names, point_metrics
from stats.core.multitask import multitask_comparisons
from stats.core.study import Study
from stats.core.systems import system_summary
from stats.core.token_controlled import rq5_groups
from stats.read.contamination import SPLIT, Contamination
from stats.read.results import JobResult


@dataclass
class CleanStudy(Study):
    """A study whose predictions are cut to clean units: ``exclude`` maps a task to the
    unit ids left out; each job's metrics are already recomputed on what is left."""

    full: Study | None = None
    exclude: dict[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        # the systems keep the names they have in the full study (task sets in brackets)
        self.label = {j.job_id: self.full.system(j) for j in self.jobs}

    def predictions(self, job: JobResult, task: str):
        key = (job.job_id, task)
        if key not in self._predictions:
            got = self.full.predictions(self.full.by_id[job.job_id], task)
            if not isinstance(got, str):
                kind, spec, frame = got
                got = (kind, spec, frame[~frame.index.isin(self.exclude.get(task, ()))])
            self._predictions[key] = got
        return self._predictions[key]


def clean_metrics(study: Study, job: JobResult, task: str, excluded: frozenset[str]):
    """(every recomputable metric of the job's task on the clean units, the job's unit ids),
    or why not."""
    got = study.predictions(job, task)
    if isinstance(got, str):
        return got
    kind, spec, frame = got
    primary = job.per_task[task].primary_metric
    if primary not in metric_names(kind, spec):
        return f"{task}: {primary} cannot be recomputed from stat_spec kind {kind!r}"
    keep = frame[~frame.index.isin(excluded)]
    if keep.empty:
        return (f"all {len(frame)} test units of {task} in job {job.job_id}'s predictions "
                "overlap the training data")
    values = point_metrics(kind, spec, keep)
    if not math.isfinite(values[primary]):
        return f"{primary} is undefined on the {len(keep)} clean units of {task} (job {job.job_id})"
    return {k: v for k, v in values.items() if math.isfinite(v)}, frame.index


def _relevant_jobs(study: Study, train: frozenset[str]) -> list[JobResult]:
    """The multi-task jobs trained on exactly ``train``, the single-task jobs of its tasks,
    and the token-controlled jobs referencing those multi-task jobs."""
    mt_ids = {j.job_id for j in study.jobs if j.strategy == MT and frozenset(j.tasks) == train}
    return [j for j in study.jobs if j.job_id in mt_ids
            or (j.strategy == ST and set(j.tasks) <= train)
            or (j.strategy == TC and (j.parity or {}).get("reference_job") in mt_ids)]


def clean_group(study: Study, cont: Contamination, train: frozenset[str]) -> dict[str, Any]:
    """RQ1 and RQ5 of the multi-task systems trained on ``train``, on the clean units."""
    tasks = sorted(train)
    exclude: dict[str, frozenset[str]] = {}
    reasons: dict[str, str] = {}
    for task in tasks:
        got = cont.excluded(task, tasks)
        if isinstance(got, str):
            reasons[task] = got
        else:
            exclude[task] = got
    jobs = _relevant_jobs(study, train)
    metrics: dict[tuple[str, str], dict[str, float]] = {}
    seen: dict[str, set[str]] = {}
    for job in jobs:
        for task in (t for t in job.tasks if t not in reasons):
            got = clean_metrics(study, job, task, exclude[task])
            if isinstance(got, str):
                reasons[task] = got
                continue
            metrics[job.job_id, task] = got[0]
            seen.setdefault(task, set()).update(got[1])
    clean_jobs = [c for j in jobs if (c := _clean_job(j, metrics, reasons)) is not None]
    cs = CleanStudy(clean_jobs, [], study.options, full=study, exclude=exclude)
    rq1 = multitask_comparisons(cs, bootstrap=True)
    systems = {(m, s, e, t): system_summary(cs, m, s, e, t, bootstrap=False)
               for m in cs.models() for s in (ST, MT, TC) for e in cs.experiments(m, s)
               for t in cs.tasks_of(m, s, e)}
    units = {t: {"test_units": len(ids), "dropped": len(ids & exclude[t]),
                 "clean": len(ids - exclude[t]),
                 "overlapping_in_split": len(exclude[t]),
                 "split_units": cont.doc["units"][t][SPLIT]} for t, ids in seen.items()}
    return {"train_tasks": tasks, "reasons": reasons, "units": units, "rq1": rq1,
            "rq5": rq5_groups(cs, rq1, systems, bootstrap=True), "notes": cs.notes}


def _clean_job(job: JobResult, metrics: dict, reasons: dict[str, str]) -> JobResult | None:
    tasks = tuple(t for t in job.tasks if t not in reasons)
    if not tasks:
        return None
    per_task = {t: replace(job.per_task[t], metrics=metrics[job.job_id, t], best_weights=None)
                for t in tasks}
    return replace(job, tasks=tasks, per_task=per_task)


def _find_row(families: list[dict[str, Any]], match: dict[str, Any], task: str):
    for fam in families:
        if all(fam.get(k) == v for k, v in match.items()):
            return next((r for r in fam["rows"] if r["task"] == task), None)
    return None


def _entry(group: dict[str, Any], task: str, row: dict[str, Any] | None) -> dict[str, Any]:
    """A row's ``clean`` entry: the clean comparison plus which units it left out."""
    base = {"train_tasks": group["train_tasks"], "units": group["units"].get(task)}
    if task in group["reasons"]:
        return {"n": 0, "p_holm": None, "significant": None, **base,
                "reason": group["reasons"][task]}
    if row is None or not row.get("n"):
        why = (row or {}).get("reason") or "no clean-unit comparison"
        return {"n": 0, "p_holm": None, "significant": None, **base, "reason": why}
    # the sensitivity alternatives are full-test ones: not repeated on clean units
    return {**{k: v for k, v in row.items() if k != "sensitivity"}, **base}


def attach_clean(study: Study, analysis: Analysis, cont: Contamination) -> int:
    """Add ``clean`` to every compared RQ1 and RQ5 row; return how many rows got one."""
    groups: dict[frozenset[str], dict[str, Any]] = {}

    def group(row: dict[str, Any]) -> dict[str, Any]:
        train = frozenset(study.by_id[row["job_ids_a"][0]].tasks)
        if train not in groups:
            groups[train] = clean_group(study, cont, train)
        return groups[train]

    done = 0
    for fam in analysis.multitask:
        keys = ("model", "multi_task_experiment", "single_task_experiment")
        for row in (r for r in fam["rows"] if r.get("n")):
            g = group(row)
            found = _find_row(g["rq1"], {k: fam[k] for k in keys}, row["task"])
            row["clean"] = _entry(g, row["task"], found)
            done += 1
    for fam in analysis.rq5:
        keys = ("model", "multi_task_experiment", "token_controlled_experiment")
        for row in (r for r in fam["rows"] if "parity_summary" in r):
            g = group(row)
            found = _find_row(g["rq5"], {k: fam[k] for k in keys}, row["task"])
            row["clean"] = _entry(g, row["task"], found)
            done += 1
    for g in groups.values():
        for text in g["notes"]:
            study.note(f"clean units (trained on {'+'.join(g['train_tasks'])}): {text}")
    return done
