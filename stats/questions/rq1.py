"""RQ1: multi-task versus single-task fine-tuning, per task (paired over seeds; the
statistics are :func:`stats.core.multitask.multitask_comparisons`): Table 2 and SUMMARY.txt."""

from __future__ import annotations

from typing import Any

import numpy as np

from stats.questions.contamination import finding
from stats.questions.context import Context, SectionOutput, SummaryBlock
from stats.render import tables
from stats.render.numbers import interval, p_value, points
from stats.render.summary import (
    clean_units_text,
    effect_text,
    finding_change,
    level_text,
    mde_text,
    pooled_text,
    seeds_text,
    t_text,
    why,
)


def _comparison_line(r: dict[str, Any], b: str) -> str:
    if not r.get("n"):
        return f"  {r['task']}: n/a ({r['reason']})"
    t, w, dz = r["paired_t"], r["wilcoxon"], r["d_z"]
    boot, ci = r.get("paired_bootstrap") or {}, r.get("diff_interval") or {}
    return (f"  {r['task']} ({r['primary_metric']}), n={r['n']} matched seeds "
            f"({seeds_text(r)}): "
            f"{b} {points(float(np.mean(r['values_b'])), False)}, "
            f"MT {points(float(np.mean(r['values_a'])), False)}, "
            f"Δ {points(r['mean_diff'])} points, seed-level {level_text(ci)} CI "
            f"{interval(ci.get('low'), ci.get('high'))}{why(ci)}; paired {t_text(t)}, Holm p "
            f"{p_value(r['p_holm'])}{why(t)}; test-set resampling {level_text(boot)} CI "
            f"{interval(boot.get('low'), boot.get('high'))}{why(boot)}, Berg-Kirkpatrick p "
            f"{p_value(boot.get('p_bk'))}; Wilcoxon p {p_value(w['p'])}{why(w)}; "
            f"effect {effect_text(dz)}"
            f"{why(dz)}, {pooled_text(r['pooled_d'])}; minimum detectable effect at 80% power: "
            f"{mde_text(r)}")


def _methodology_pooled_line(m: dict[str, Any]) -> str:
    """The methodology's (9.2) pooled comparison: all tasks' seed scores in one unpaired
    Student's t-test and Cohen's d, with its d > 0.3 criterion."""
    t = m["students_t"]
    crit = {True: "yes", False: "no", None: "n/a"}[m["d_above_0_3"]]
    head = (f"  methodology 9.2, all {len(m['tasks'])} compared task(s) pooled (matched seeds; "
            "unpaired, mixes the tasks' metrics)")
    means = (f"MT {points(t['mean_a'], False)} (n={m['n_a']}) vs ST "
             f"{points(t['mean_b'], False)} (n={m['n_b']})")
    return (f"{head}: {means}, Δ {points(m['mean_diff'])} points; Student's {t_text(t)}"
            f"{why(t)}; {pooled_text(m['pooled_d'])}; d > 0.3: {crit}")


def _clean_rq1_line(r: dict[str, Any]) -> str:
    """The RQ1 row recomputed on its clean test units, indented under it."""
    c = r["clean"]
    if not c.get("n"):
        return f"    clean units: n/a ({c['reason']})"
    t, ci = c["paired_t"], c.get("diff_interval") or {}
    return (f"    {clean_units_text(c)}: ST {points(float(np.mean(c['values_b'])), False)}, "
            f"MT {points(float(np.mean(c['values_a'])), False)}, Δ {points(c['mean_diff'])} "
            f"points, seed-level {level_text(ci)} CI {interval(ci.get('low'), ci.get('high'))}"
            f"{why(ci)}, paired t p {p_value(t['p'])}, Holm p {p_value(c['p_holm'])}{why(t)}; "
            f"effect {effect_text(c['d_z'])}; "
            + finding_change(finding(r), finding(c)))


def section(ctx: Context) -> SectionOutput:
    opt = ctx.options
    lines = []
    fams = ctx.analysis.multitask
    if not any(f["multi_task_experiment"] for f in fams):
        lines.append("not applicable: no multi-task job among the results")
    for f in fams:
        s = f["summary"]
        if f["multi_task_experiment"] is None:
            lines.append(f"{f['model']}: tasks with no multi-task run: "
                         + ", ".join(f"{r['task']} ({r['reason']})" for r in f["rows"]))
            continue
        lines.append(
            f"{f['model']}, {f['multi_task_experiment']} vs {f['single_task_experiment'] or 'n/a'}: "
            f"tasks improved (MT − ST > 0, Holm p < {opt.alpha:g}): {s['improved_significant']} "
            f"of {s['tasks_compared']} compared ({s['tasks_run']} run); significantly worse: "
            f"{s['worse_significant']}; positive point estimates: {s['positive_point_estimate']}; "
            f"mean gain {points(s['mean_gain'])} points, 95% CI {interval(s['low'], s['high'])}"
            f"{why(s)} (seed-level, stratified bootstrap, {s['resamples']} resamples)")
        if s.get("methodology_pooled"):
            lines.append(_methodology_pooled_line(s["methodology_pooled"]))
        for r in f["rows"]:
            lines.append(_comparison_line(r, "ST"))
            if "clean" in r:
                lines.append(_clean_rq1_line(r))
    return SectionOutput(
        tables={"table_multitask_comparison.tex": tables.multitask_table(
            ctx.env, fams, opt.alpha, ctx.source)},
        statistics={"rq1": fams},
        summary=[SummaryBlock("RQ1: multi-task vs single-task fine-tuning", lines)])
