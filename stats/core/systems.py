"""Per-system summaries and paired comparisons of two systems over matched seeds (the rows
every research question's families are made of), and Holm across a family's tasks.

Everything returned is plain dicts/lists (what statistics.json stores); ``None`` plus a
``reason`` marks what is not applicable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stats.core import significance
from stats.core.study import Study
from stats.core.study_bootstrap import paired_bootstrap, system_bootstrap
from stats.read.results import JobResult, token_efficiency


def _values(runs: dict[int, JobResult], task: str) -> list[float]:
    return [runs[s].per_task[task].metrics[runs[s].per_task[task].primary_metric]
            for s in sorted(runs)]


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
    interval = significance.seed_interval(values, study.options.level)
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
    t = significance.paired_t(a, b)
    out = {
        "task": task, "a": a_label, "b": b_label, "n": len(pairs),
        "primary_metric": pairs[0][1].per_task[task].primary_metric if pairs else None,
        "seeds": [s for s, _, _ in pairs],
        "job_ids_a": [ja.job_id for _, ja, _ in pairs],
        "job_ids_b": [jb.job_id for _, _, jb in pairs],
        "values_a": a, "values_b": b,
        "differences": [x - y for x, y in zip(a, b)],
        "mean_diff": t["mean_diff"],
        "diff_interval": significance.seed_interval([x - y for x, y in zip(a, b)], opt.level),
        "paired_t": t, "wilcoxon": significance.wilcoxon(a, b), "d_z": significance.cohens_dz(a, b),
        "pooled_d": significance.pooled_d(a, b),
        "mde": significance.min_detectable_effect(len(pairs), t["sd_diff"], opt.alpha),
        "p_holm": None, "significant": None,
        "reason": t["reason"],
    }
    if bootstrap:
        out["paired_bootstrap"] = paired_bootstrap(study, [(ja, jb) for _, ja, jb in pairs],
                                                   task)
    return out


def apply_holm(rows: list[dict[str, Any]], alpha: float) -> None:
    """Holm across the tasks of one comparison family (rows with a paired t p-value)."""
    adjusted = significance.holm([r.get("paired_t", {}).get("p") for r in rows], alpha)
    for row, p in zip(rows, adjusted):
        row["p_holm"] = p
        row["significant"] = None if p is None else bool(p < alpha)
        row["holm_family_size"] = sum(q is not None for q in adjusted)


def na_row(model: str, task: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "task": task, "n": 0, "mean_diff": None, "p_holm": None,
            "significant": None, "reason": reason, **extra}
