"""RQ1's statistics: multi-task against single-task systems, per model and task.

A matched unit is the same model, task and seed in a single-task and a multi-task
experiment; a multi-task job contributes one row per task of its ``per_task``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl_contract.schema import MT, ST
from stats.core import significance
from stats.core.study import Study
from stats.core.systems import apply_holm, compare_pairs, na_row


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
                        rows.append(na_row(model, task, "only multi_task ran this task "
                                            "(no single-task baseline)", a=e_m, b=e_s,
                                            primary_metric=metric))
                        continue
                    st_runs = study.runs(model, ST, e_s, task)
                    seeds = sorted(set(mt_runs) & set(st_runs))
                    if not seeds:
                        rows.append(na_row(model, task, "missing counterpart: no seed run by "
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
            rows = [na_row(model, t, "only single_task ran this task (no multi-task job "
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
    lo, hi = significance.percentile_interval(total / len(diffs), opt.level)
    out["low"], out["high"] = lo, hi
    return out


def methodology_pooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The methodology's "multi-task vs single-task" line (section 9.2): every compared
    task's matched-seed scores pooled into one MT and one ST sample, Student's t-test and
    Cohen's d with the pooled SD. It ignores the pairing and mixes the tasks' metrics (F1,
    Pearson, ...), so it sits beside the per-task paired tests, never instead of them."""
    a = [v for r in rows for v in r["values_a"]]
    b = [v for r in rows for v in r["values_b"]]
    d = significance.pooled_d(a, b)
    return {"tasks": [r["task"] for r in rows], "n_a": len(a), "n_b": len(b),
            "mean_diff": float(np.mean(a) - np.mean(b)) if a and b else None,
            "students_t": significance.students_t(a, b), "pooled_d": d,
            "d_above_0_3": None if d["d"] is None else bool(d["d"] > 0.3)}
