"""``build_paper``: results folders -> paper/ (CSV, statistics.json, tables, figures, SUMMARY).

The work is a list of *sections* run in order on one shared context (the loaded study and
the core analysis). Each section returns its tables, figures, statistics.json entries and
SUMMARY.txt blocks; nothing is written until every section has run, and then each file is
written atomically. A later issue adds RQ2 / RQ3 / RQ4 by appending to ``SECTIONS`` (or
passing ``sections=``) — no other code changes.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from stats import contamination as contam
from stats import figures, rq2, rq3, rq4, tables
from stats.analysis import TC, Analysis, Options, Study, analyse, seed_list
from stats.fileio import StatsInputError, atomic_savefig, atomic_write_json, atomic_write_text
from stats.load import load_results
from stats.tests import effect_band, verdict_rule

FIGURE_FORMATS = ("pdf", "png")


@dataclass
class SummaryBlock:
    title: str
    lines: list[str]


@dataclass
class SectionOutput:
    tables: dict[str, str] = field(default_factory=dict)  # file name -> LaTeX
    figures: dict[str, Any] = field(default_factory=dict)  # file stem -> matplotlib Figure
    statistics: dict[str, Any] = field(default_factory=dict)  # statistics.json entries
    summary: list[SummaryBlock] = field(default_factory=list)


@dataclass
class Context:
    study: Study
    analysis: Analysis
    env: jinja2.Environment
    options: Options
    source: str  # the results folders, for table headers
    # the contamination file, verified or why not (issue 13); None: not looked for
    contamination: contam.Contamination | None = None
    shared: dict[str, Any] = field(default_factory=dict)  # what a section leaves for a later one


@dataclass(frozen=True)
class Section:
    name: str
    covers: tuple[str, ...]  # research questions this section reports ("RQ1", ...)
    run: Callable[[Context], SectionOutput]


# ---------------------------------------------------------------- formatting helpers
def _p(p: float | None) -> str:
    return "n/a" if p is None else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def _pts(x: float | None, signed: bool = True) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    v = round(100 * x, 2) + 0.0  # + 0.0 turns a rounded -0.0 into 0.0
    return f"{v:+.2f}" if signed and v != 0 else f"{v:.2f}"


def _ci(lo: float | None, hi: float | None, signed: bool = True) -> str:
    return "n/a" if lo is None or hi is None else f"[{_pts(lo, signed)}, {_pts(hi, signed)}]"


def _num(x: float | None, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def _why(d: dict[str, Any]) -> str:
    return f" ({d['reason']})" if d.get("reason") else ""


# ---------------------------------------------------------------- sections
def dataset_section(ctx: Context) -> SectionOutput:
    study = ctx.study
    datasets = dataset_statistics(study)
    counts = Counter(j.strategy for j in study.jobs)
    lines = [f"jobs read: {len(study.jobs)} ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items())) or 'none'})",
             f"models: {', '.join(study.models()) or 'none'}",
             f"tasks: {', '.join(d['task'] for d in datasets) or 'none'}",
             f"seeds: {', '.join(str(s) for s in sorted({j.seed for j in study.jobs})) or 'none'}"]
    for d in datasets:
        lines.append(f"  {d['task']}: {d['kind']}, primary {d['primary_metric']}, train "
                     f"{d['train_samples']}, validation {d['val_samples']}, test "
                     f"{d['test_samples']}, test units scored {d['n_test']}")
    return SectionOutput(
        tables={"table_dataset_statistics.tex": tables.dataset_table(ctx.env, datasets, ctx.source)},
        statistics={"datasets": datasets},
        summary=[SummaryBlock("Data", lines)])


def dataset_statistics(study: Study) -> list[dict[str, Any]]:
    """Per task, the most common recorded value of each dataset statistic (and whether jobs
    disagree, e.g. when a demo capped the examples)."""
    out = []
    for task in sorted({t for j in study.jobs for t in j.tasks}):
        values: dict[str, list[Any]] = {k: [] for k in
                                        ("train_samples", "val_samples", "test_samples",
                                         "num_labels", "n_test")}
        kinds, metrics = Counter(), Counter()
        for job in study.jobs:
            if task not in job.per_task:
                continue
            tr = job.per_task[task]
            kinds[(tr.stat_spec or {}).get("kind")] += 1
            metrics[tr.primary_metric] += 1
            ds = job.dataset_stats.get(task) or {}
            for key, seen in values.items():
                v = tr.n_test if key == "n_test" else ds.get(key)
                if isinstance(v, int) and not isinstance(v, bool):
                    seen.append(v)
        row = {"task": task, "kind": kinds.most_common(1)[0][0],
               "primary_metric": metrics.most_common(1)[0][0], "varies": {}}
        for key, vs in values.items():
            row[key] = Counter(vs).most_common(1)[0][0] if vs else None
            row["varies"][key] = len(set(vs)) > 1
        out.append(row)
    return out


def single_task_section(ctx: Context) -> SectionOutput:
    lines = []
    for s in ctx.analysis.systems:
        boot = s.get("bootstrap") or {}
        lines.append(
            f"{s['model']} {s['strategy']} ({s['experiment']}) {s['task']} {s['primary_metric']}: "
            f"mean {_pts(s['mean'], False)} ± {_pts(s['sd'], False)} over {len(s['seeds'])} "
            f"seed(s) ({seed_list(s['seeds'])}){_why(s['seed_interval'])}; bootstrap 95% CI "
            f"{_ci(boot.get('low'), boot.get('high'), False)}"
            f"{_why(boot)}; tokens {s['token_count_mean']:,.0f}; efficiency "
            f"{_num(s['token_efficiency_mean'], '.4f')}"
            " per million tokens" + "".join(f"; {k} {_pts(v, False)}" for k, v in
                                             (s.get("secondary") or {}).items()))
    return SectionOutput(
        tables={"table_single_task.tex": tables.single_task_table(ctx.env, ctx.analysis.systems,
                                                                  ctx.source)},
        statistics={"systems": ctx.analysis.systems},
        summary=[SummaryBlock("Systems (mean over seeds of the primary test metric, × 100)",
                              lines or ["no results"])])


def _effect_text(dz: dict[str, Any]) -> str:
    if dz["reported"] is None:
        return "d_z n/a"
    name = "Hedges' g (paired)" if dz["corrected"] else "d_z"
    return f"{name} {dz['reported']:+.2f} ({dz['band']})"


def _pooled_text(pd_: dict[str, Any]) -> str:
    """Cohen's d with the pooled SD, uncorrected: the methodology's effect size."""
    if pd_.get("d") is None:
        return f"Cohen's d (pooled SD) n/a{_why(pd_)}"
    return f"Cohen's d (pooled SD) {pd_['d']:+.2f} ({effect_band(pd_['d'])})"


def _seeds_text(r: dict[str, Any]) -> str:
    """"seeds 1–5", plus what the row leaves out (part of a comparison uses shared seeds)."""
    text = f"seeds {seed_list(r.get('seeds') or [])}"
    dropped = r.get("seeds_dropped") or {}
    if dropped:
        text += " (left out, not run by every system: " + "; ".join(
            f"{name} seeds {seed_list(s)}" for name, s in sorted(dropped.items())) + ")"
    return text


def _comparison_line(r: dict[str, Any], b: str) -> str:
    if not r.get("n"):
        return f"  {r['task']}: n/a ({r['reason']})"
    t, w, dz, mde = r["paired_t"], r["wilcoxon"], r["d_z"], r["mde"]
    boot = r.get("paired_bootstrap") or {}
    return (f"  {r['task']} ({r['primary_metric']}), n={r['n']} matched seeds "
            f"({_seeds_text(r)}): "
            f"{b} {_pts(float(np.mean(r['values_b'])), False)}, "
            f"MT {_pts(float(np.mean(r['values_a'])), False)}, "
            f"Δ {_pts(r['mean_diff'])} points, paired-bootstrap 95% CI "
            f"{_ci(boot.get('low'), boot.get('high'))}{_why(boot)}, Berg-Kirkpatrick p "
            f"{_p(boot.get('p_bk'))}; paired t({_num(t['df'], 'd')}) = "
            f"{_num(t['t'], '.3f')}, p {_p(t['p'])}, Holm p "
            f"{_p(r['p_holm'])}{_why(t)}; Wilcoxon p {_p(w['p'])}{_why(w)}; "
            f"effect {_effect_text(dz)}"
            f"{_why(dz)}, {_pooled_text(r['pooled_d'])}; minimum detectable effect at 80% power: "
            f"d_z {_num(mde['d_z'], '.2f')} = {_pts(mde['raw'], False)} points{_why(mde)}")


def _methodology_pooled_line(m: dict[str, Any]) -> str:
    t = m["students_t"]
    crit = {True: "yes", False: "no", None: "n/a"}[m["d_above_0_3"]]
    return (f"  methodology 9.2, all {len(m['tasks'])} compared task(s) pooled (matched seeds; "
            f"unpaired, mixes the tasks' metrics): MT {_pts(t['mean_a'], False)} (n={m['n_a']}) "
            f"vs ST {_pts(t['mean_b'], False)} (n={m['n_b']}), Δ {_pts(m['mean_diff'])} points; "
            f"Student's t({_num(t['df'], 'd')}) = {_num(t['t'], '.3f')}, p {_p(t['p'])}"
            f"{_why(t)}; {_pooled_text(m['pooled_d'])}; d > 0.3: {crit}")


def rq1_section(ctx: Context) -> SectionOutput:
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
            f"mean gain {_pts(s['mean_gain'])} points, 95% CI {_ci(s['low'], s['high'])}"
            f"{_why(s)} (seed-level, stratified bootstrap, {s['resamples']} resamples)")
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


def _rq5_family_line(f: dict[str, Any]) -> str:
    if f["model"] is None:
        return "token-controlled jobs without a usable multi-task reference:"
    if f.get("token_controlled_experiment") is None:
        return f"{f['model']}, {f['multi_task_experiment']}: no token-controlled system"
    return (f"{f['model']}, {f['multi_task_experiment']} vs {f['token_controlled_experiment']} "
            f"(parity {f['parity_mode']}, target {f['parity_target'] or 'not recorded'}; TC "
            "tested at its final weights):")


def _alternative_text(what: str, verdict: str | None, main: str, detail: str) -> str:
    if verdict is None:
        return f"{what}: n/a ({detail})"
    return f"{what}: {verdict} ({'unchanged' if verdict == main else 'CHANGES'}{detail})"


def _sensitivity_line(r: dict[str, Any]) -> str:
    """One line: does the verdict change with TC at its best-validation weights, or under
    the other parity target? (Not a second verdict.)"""
    sens = r.get("sensitivity") or {}
    best = sens.get("best_weights") or {}
    detail = (f"; MT − TC {_pts(best.get('mean_diff'))} points, Holm p {_p(best.get('p_holm'))}"
              if best.get("verdict") else best.get("reason") or "not computed")
    parts = [_alternative_text("TC at its best-validation weights", best.get("verdict"),
                               r["verdict"], detail)]
    for o in sens.get("other_targets", []):
        parts.append(_alternative_text(
            f"parity target {o['target']!r} ({o['token_controlled_experiment']})", o["verdict"],
            r["verdict"], "" if o["verdict"] else o.get("reason") or "no comparison"))
    target = next((p["target"] for p in r["parity"] if p["target"]), None)
    if not sens.get("other_targets"):
        parts.append("other parity target: " + (
            "n/a (this system's target is not recorded)" if target is None else
            f"n/a (no token-controlled system with target "
            f"{'best' if target == 'total' else 'total'!r} on this multi-task system)"))
    compared = [best.get("verdict")] + [o["verdict"] for o in sens.get("other_targets", [])]
    end = ("the verdict depends on these choices" if sens.get("changes")
           else "verdict unchanged" if any(compared) else "nothing to compare")
    return "    sensitivity (not a second verdict): " + "; ".join(parts) + f" — {end}"


def _rq5_lines(r: dict[str, Any], family: dict[str, Any]) -> list[str]:
    if "parity_summary" not in r:
        return [f"  {r['model']} {r['task']}: {r.get('verdict')} (n/a: {r['reason']})"]
    ps, boot = r["parity_summary"], r.get("paired_bootstrap") or {}
    head = (f"  {r['model']} {r['task']} ({r['primary_metric']}, "
            f"{family['multi_task_experiment']} vs {r['token_controlled_experiment']}): "
            f"verdict {r['verdict'].upper()} — {r['verdict_reason']}")
    numbers = (
        f"    {_seeds_text(r)}: ST {_pts(r['st_mean'], False)}, MT {_pts(r['mt_mean'], False)} "
        f"({r['mt_tokens_mean']:,.0f} tokens), TC {_pts(r['tc_mean'], False)} "
        f"({r['tc_tokens_mean']:,.0f} tokens); parity: {ps['detail']}; "
        f"MT − TC {_pts(r['mean_diff'])} points, paired-bootstrap 95% CI "
        f"{_ci(boot.get('low'), boot.get('high'))}, paired t p {_p(r['paired_t']['p'])}, "
        f"Holm p {_p(r['p_holm'])}; effect {_effect_text(r['d_z'])}, "
        f"{_pooled_text(r['pooled_d'])}; token efficiency MT {_num(r['mt_efficiency'], '.4f')}, "
        f"TC {_num(r['tc_efficiency'], '.4f')} per million tokens; MDE (80% power) "
        f"{_pts(r['mde']['raw'], False)} points")
    out = [head, numbers, _sensitivity_line(r)]
    return out + ([_clean_rq5_line(r)] if "clean" in r else [])


# ---------------------------------------------------------------- clean units (issue 13)
def _clean_units_text(c: dict[str, Any]) -> str:
    u = c.get("units")
    if not u:
        return "clean units"
    return f"clean units ({contam.dropped_text(c)}; {u['clean']} left)"


def _finding_change(full: str | None, now: str | None) -> str:
    return (f"finding: {now or 'no test'} (full test set: {full or 'no test'}"
            f"{'' if now == full else '; CHANGES'})")


def _clean_rq1_line(r: dict[str, Any]) -> str:
    """The RQ1 row recomputed on its clean test units, indented under it."""
    c = r["clean"]
    if not c.get("n"):
        return f"    clean units: n/a ({c['reason']})"
    t, boot = c["paired_t"], c.get("paired_bootstrap") or {}
    return (f"    {_clean_units_text(c)}: ST {_pts(float(np.mean(c['values_b'])), False)}, "
            f"MT {_pts(float(np.mean(c['values_a'])), False)}, Δ {_pts(c['mean_diff'])} "
            f"points, paired-bootstrap 95% CI {_ci(boot.get('low'), boot.get('high'))}"
            f"{_why(boot)}, paired t p {_p(t['p'])}, Holm p {_p(c['p_holm'])}{_why(t)}; "
            f"effect {_effect_text(c['d_z'])}; "
            + _finding_change(contam.finding(r), contam.finding(c)))


def _clean_rq5_line(r: dict[str, Any]) -> str:
    """The RQ5 row recomputed on its clean test units (verdict included), under it."""
    c = r["clean"]
    if not c.get("n") or "parity_summary" not in c:
        return f"    clean units: n/a ({c['reason']})"
    boot, st = c.get("paired_bootstrap") or {}, c.get("mt_minus_st") or {}
    change = "unchanged" if c["verdict"] == r["verdict"] else \
        f"CHANGES from {r['verdict'].upper()}"
    return (f"    {_clean_units_text(c)}: ST {_pts(c['st_mean'], False)}, MT "
            f"{_pts(c['mt_mean'], False)}, TC {_pts(c['tc_mean'], False)}; MT − TC "
            f"{_pts(c['mean_diff'])} points, paired-bootstrap 95% CI "
            f"{_ci(boot.get('low'), boot.get('high'))}, Holm p {_p(c['p_holm'])}; MT − ST "
            f"{_pts(st.get('mean_diff'))} points, Holm p {_p(st.get('p_holm'))}; verdict "
            f"{c['verdict'].upper()} ({change})")


def rq5_section(ctx: Context) -> SectionOutput:
    opt = ctx.options
    lines = [f"rule: {verdict_rule(opt.alpha, opt.parity_threshold)}"]
    if not any(j.strategy == TC for j in ctx.study.jobs):
        lines.append("not applicable: no token-controlled job among the results")
    verdicts = Counter(r.get("verdict") for f in ctx.analysis.rq5 for r in f["rows"])
    if verdicts:
        lines.append("verdicts: " + ", ".join(f"{k}: {v}" for k, v in sorted(
            verdicts.items(), key=lambda kv: str(kv[0]))))
    for f in ctx.analysis.rq5:
        lines.append(_rq5_family_line(f))
        for r in f["rows"]:
            lines += _rq5_lines(r, f)
    return SectionOutput(
        tables={"table_rq5_token_controlled.tex": tables.rq5_table(
            ctx.env, ctx.analysis.rq5, opt.alpha, opt.parity_threshold, ctx.source)},
        statistics={"rq5": ctx.analysis.rq5, "rq5_verdict_rule": verdict_rule(
            opt.alpha, opt.parity_threshold)},
        summary=[SummaryBlock("RQ5: token-controlled transfer analysis", lines)])


def _clean_entries(ctx: Context, rq2_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every comparison with a clean-unit result: what table_clean_units shows, and the
    plain-words sentence where the finding changes."""
    entries = []

    def add(rq, model, comparison, row, findings, boot_key, numbers):
        entries.append({"rq": rq, "model": model, "comparison": comparison,
                        "task": row["task"], "full": row, "clean": row["clean"],
                        "findings": findings, "boot_key": boot_key,
                        "sentence": contam.change_sentence(rq, f"{model} {comparison}", row,
                                                           *findings, numbers)})

    def mt_st(r):
        return f"MT − ST {_pts(r.get('mean_diff'))} points, Holm p {_p(r.get('p_holm'))}"

    for f in ctx.analysis.multitask:
        for r in (r for r in f["rows"] if "clean" in r):
            add("RQ1", f["model"], f"{f['multi_task_experiment']} vs "
                f"{f['single_task_experiment']}", r, (contam.finding(r),
                                                      contam.finding(r["clean"])),
                "paired_bootstrap", (mt_st(r), mt_st(r["clean"])))
    for f in ctx.analysis.rq5:
        for r in (r for r in f["rows"] if "clean" in r):
            def numbers(x):
                return (f"MT − TC {_pts(x.get('mean_diff'))} points, Holm p "
                        f"{_p(x.get('p_holm'))}; {mt_st(x.get('mt_minus_st') or {})}")
            add("RQ5", f["model"], f"{f['multi_task_experiment']} vs "
                f"{f['token_controlled_experiment']}", r,
                (r["verdict"], r["clean"].get("verdict")), "paired_bootstrap",
                (numbers(r), numbers(r["clean"])))
    for r in (r for r in rq2_rows if "clean" in r):
        add("RQ2", r["model"], f"{r['mt_experiment']} vs {r['st_experiment']} ({r['st_tasks']})",
            r, (rq2.verdict(r), rq2.verdict(r["clean"])), "bootstrap",
            (mt_st(r), mt_st(r["clean"])))
    return entries


def _overlap_lines(cont: contam.Contamination, rows: list[dict[str, Any]],
                   evaluated: list[str]) -> list[str]:
    """The largest overlaps on the study's test sets, in words."""
    n = cont.doc["n"]
    top = contam.largest(rows)
    lines = [f"largest overlaps of the study's test sets with its training data (exact, or a "
             f"shared run of {n} words):" if top else
             "no test unit of the study's tasks overlaps their training data"]
    for r in top:
        whose = "its own" if r["train_task"] == r["test_task"] else f"{r['train_task']}'s"
        lines.append(f"  {r['test_task']}: {r['any']} of its {r['units']} test units "
                     f"({100 * r['share']:.1f}%) overlap {whose} training data ({r['exact']} "
                     f"exact duplicates, {r['ngram']} by {n}-gram)")
    pairs = sum(1 for r in rows if r["train_task"] is not None and r["any"])
    lines.append(f"(test task, training task) pairs with any overlap: {pairs}; the full list: "
                 "table_contamination.tex, contamination.csv (every task of the file, "
                 "validation splits too)")
    missing = sorted(set(evaluated) - set(cont.doc["tasks"]))
    if missing:
        lines.append(f"tasks of the study not in the contamination file (no clean-unit results "
                     f"for their comparisons): {', '.join(missing)}")
    return lines


def _contamination_lines(ctx: Context, cont: contam.Contamination, rows: list[dict[str, Any]],
                         evaluated: list[str], entries: list[dict[str, Any]],
                         changes: list[str]) -> list[str]:
    """SUMMARY.txt's contamination block."""
    lines = [cont.describe()]
    if not cont.usable:
        return lines + [("clean-unit results: not computed; every result above is on the "
                         "full test sets"), contam.PRETRAINING]
    lines += [f"rule: {contam.RULE}"] + _overlap_lines(cont, rows, evaluated)
    decon = sum(1 for j in ctx.study.jobs if j.config.get("decontaminate"))
    if decon:
        lines.append(f"{decon} job(s) trained with decontaminate = true (their training data "
                     "already left out units overlapping evaluated units); the clean-unit "
                     "filter applies to every job alike")
    counts = Counter(e["rq"] for e in entries)
    lines.append("clean-unit results: " + (", ".join(
        f"{counts[q]} {q} comparison(s)" for q in ("RQ1", "RQ5", "RQ2") if counts[q])
        or "no comparison to recompute") + " (under each row in its section; "
        "table_clean_units.tex)")
    if changes:
        lines += ["findings that change on the clean units:"] + [f"  {t}" for t in changes]
    elif entries:
        lines.append("no comparison's finding changes on the clean units")
    return lines + [contam.PRETRAINING]


def contamination_section(ctx: Context) -> SectionOutput:
    """Issue 13: the overlap table and figure, the clean-unit table, and in SUMMARY.txt the
    largest overlaps, what pretraining contamination leaves open, and every comparison whose
    finding changes on the clean units (the per-row results sit under each RQ's rows)."""
    cont = ctx.contamination or contam.load_contamination(None, [])
    rq2_rows = ctx.shared.get("rq2_rows") or []
    evaluated, trained = contam.study_tasks(
        ctx.study.jobs, [r["task"] for r in rq2_rows if r.get("task")])
    rows = (contam.overlap_rows(cont.doc, evaluated or None, trained or None)
            if cont.usable else [])
    entries = _clean_entries(ctx, rq2_rows)
    changes = [e["sentence"] for e in entries if e["sentence"]]
    lines = _contamination_lines(ctx, cont, rows, evaluated, entries, changes)
    reason = None if cont.usable else cont.describe()
    # an empty table's row is short (it does not wrap); the whole reason goes in a note
    short = None if cont.usable else f"contamination {cont.status}; see the note"
    n = cont.doc["n"] if cont.usable else None
    return SectionOutput(
        tables={"table_contamination.tex": tables.contamination_table(
                    ctx.env, rows, n, short or "no task of the study is in the file",
                    ctx.source, reason),
                "table_clean_units.tex": tables.clean_units_table(
                    ctx.env, entries, ctx.options.alpha,
                    short or "no comparison to recompute", ctx.source, reason),
                "contamination.csv": _csv(contam.all_pairs(cont.doc) if cont.usable else [])},
        figures={"fig_contamination": figures.contamination_heatmap(rows, n, reason)},
        statistics={"contamination": {
            "status": cont.status, "path": cont.path, "reason": cont.reason,
            "checked": cont.checked, "n": n, "rule": contam.RULE if cont.usable else None,
            "overlap": rows, "changes": changes, "pretraining": contam.PRETRAINING,
            "clean_comparisons": len(entries)}},
        summary=[SummaryBlock("Contamination (RQ1): train/test overlap and clean test units",
                              lines)])


CSV_COLUMNS = ("test_task", "split", "train_task", "units", "exact", "ngram", "any", "share")


def _csv(rows: list[dict[str, Any]]) -> str:
    import pandas as pd

    buf = io.StringIO()
    pd.DataFrame(rows, columns=list(CSV_COLUMNS)).to_csv(buf, index=False)
    return buf.getvalue()


def figures_section(ctx: Context) -> SectionOutput:
    return SectionOutput(figures={
        "fig_strategy_bars": figures.strategy_bars(ctx.analysis),
        "fig_validation_curves": figures.validation_curves(ctx.study),
        "fig_transfer_heatmap": figures.transfer_heatmap(ctx.analysis),
    })


SECTIONS: list[Section] = [
    Section("data", (), dataset_section),
    Section("single_task", (), single_task_section),
    Section("rq1", ("RQ1",), rq1_section),
    Section("rq5", ("RQ5",), rq5_section),
    Section("rq2", ("RQ2",), rq2.report_section),
    Section("rq3", ("RQ3",), rq3.report_section),
    Section("rq4", ("RQ4",), rq4.report_section),
    Section("contamination", (), contamination_section),
    Section("figures", (), figures_section),
]
RESEARCH_QUESTIONS = ("RQ1", "RQ2", "RQ3", "RQ4", "RQ5")


# ---------------------------------------------------------------- driver
def jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN/inf become None (statistics.json has null, never NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def build_paper(out: str | Path, results: list[str | Path], options: Options | None = None,
                sections: list[Section] | None = None,
                contamination: str | Path | None = None) -> dict[str, Any]:
    """Read ``results``, run every section, write every output into ``out``.

    ``contamination``: the contamination file (issue 13); a usable one adds every
    comparison's clean-unit result; one that fails its checks is refused (the paper is built
    from the full test sets and says why); None: not measured.

    Returns {"written": [paths], "jobs": n, "skipped": [...], "contamination": {...}}. Raises
    :class:`stats.fileio.StatsInputError` when a results folder does not exist or OUT is
    not a folder.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StatsInputError(out, "OUT exists and is not a folder")
    options = Options() if options is None else options
    sections = SECTIONS if sections is None else sections
    loaded = load_results(list(results))
    study = Study(loaded.jobs, loaded.skipped, options)
    analysis = analyse(study)
    cont = contam.load_contamination(contamination, study.jobs)
    clean_rows = contam.attach_clean(study, analysis, cont) if cont.usable else 0
    source = ", ".join(str(r) for r in results)
    ctx = Context(study, analysis, tables.environment(), options, tables.latex_escape(source),
                  cont)
    outputs = [(s, s.run(ctx)) for s in sections]

    written: list[Path] = []
    buf = io.StringIO()
    study.frame.to_csv(buf, index=False)
    atomic_write_text(out / "all_results.csv", buf.getvalue())
    written.append(out / "all_results.csv")
    statistics: dict[str, Any] = {
        "generated_by": "python -m stats",
        "options": {"alpha": options.alpha, "resamples": options.resamples,
                    "seed": options.seed, "parity_threshold": options.parity_threshold,
                    "level": options.level},
        "inputs": {"results": [str(r) for r in results], "jobs": len(study.jobs),
                   "skipped": [{"path": s.path, "reason": s.reason} for s in study.skipped]},
        "notes": study.notes,
        "sections": [s.name for s in sections],
    }
    for _, o in outputs:
        statistics.update(o.statistics)
        for name, text in o.tables.items():
            atomic_write_text(out / name, text)
            written.append(out / name)
        for stem, fig in o.figures.items():
            for fmt in FIGURE_FORMATS:
                atomic_savefig(fig, out / f"{stem}.{fmt}", dpi=150)
                written.append(out / f"{stem}.{fmt}")
    atomic_write_json(out / "statistics.json", jsonable(statistics))
    written.append(out / "statistics.json")

    covered = {q for s in sections for q in s.covers}
    blocks = [b for _, o in outputs for b in o.summary]
    other = [q for q in RESEARCH_QUESTIONS if q not in covered]
    if other:
        blocks.append(SummaryBlock("Research questions without a section", [
            (f"{', '.join(other)}: no analysis section is registered in stats.report.SECTIONS, "
             "so these are not reported here.")]))
    preamble = [f"results read from: {', '.join(str(r) for r in results)}",
                f"jobs used: {len(study.jobs)}; files skipped: {len(study.skipped)}",
                (f"alpha {options.alpha:g}; bootstrap {options.resamples} resamples, seed "
                 f"{options.seed}, {100 * options.level:g}% percentile intervals; token parity "
                 f"threshold {100 * options.parity_threshold:g}%; Holm correction across the "
                 "tasks of each comparison")]
    preamble.append(cont.describe())
    preamble += [f"skipped: {s.path}: {s.reason}" for s in study.skipped]
    preamble += [f"note: {n}" for n in study.notes]
    text = ctx.env.get_template("SUMMARY.txt.j2").render(
        title="Multi-task transfer study: summary", preamble=preamble, sections=blocks)
    atomic_write_text(out / "SUMMARY.txt", text if text.endswith("\n") else text + "\n")
    written.append(out / "SUMMARY.txt")
    return {"written": [str(p) for p in written], "jobs": len(study.jobs),
            "skipped": [(s.path, s.reason) for s in study.skipped],
            "contamination": {"status": cont.status, "line": cont.describe(),
                              "clean_rows": clean_rows}}
