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

from stats import figures, rq2, rq3, rq4, tables
from stats.analysis import TC, Analysis, Options, Study, analyse
from stats.fileio import StatsInputError, atomic_savefig, atomic_write_json, atomic_write_text
from stats.load import load_results

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
            f"seed(s){_why(s['seed_interval'])}; bootstrap 95% CI {_ci(boot.get('low'), boot.get('high'), False)}"
            f"{_why(boot)}; tokens {s['token_count_mean']:,.0f}; efficiency "
            f"{_num(s['token_efficiency_mean'], '.4f')}"
            " per million tokens")
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


def _comparison_line(r: dict[str, Any], b: str) -> str:
    if not r.get("n"):
        return f"  {r['task']}: n/a ({r['reason']})"
    t, w, dz, mde = r["paired_t"], r["wilcoxon"], r["d_z"], r["mde"]
    boot = r.get("paired_bootstrap") or {}
    return (f"  {r['task']} ({r['primary_metric']}), n={r['n']} matched seeds: "
            f"{b} {_pts(float(np.mean(r['values_b'])), False)}, "
            f"MT {_pts(float(np.mean(r['values_a'])), False)}, "
            f"Δ {_pts(r['mean_diff'])} points, paired-bootstrap 95% CI "
            f"{_ci(boot.get('low'), boot.get('high'))}{_why(boot)}, Berg-Kirkpatrick p "
            f"{_p(boot.get('p_bk'))}; paired t({_num(t['df'], 'd')}) = "
            f"{_num(t['t'], '.3f')}, p {_p(t['p'])}, Holm p "
            f"{_p(r['p_holm'])}{_why(t)}; Wilcoxon p {_p(w['p'])}{_why(w)}; "
            f"effect {_effect_text(dz)}"
            f"{_why(dz)}; minimum detectable effect at 80% power: "
            f"d_z {_num(mde['d_z'], '.2f')} = {_pts(mde['raw'], False)} points{_why(mde)}")


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
        lines += [_comparison_line(r, "ST") for r in f["rows"]]
    return SectionOutput(
        tables={"table_multitask_comparison.tex": tables.multitask_table(
            ctx.env, fams, opt.alpha, ctx.source)},
        statistics={"rq1": fams},
        summary=[SummaryBlock("RQ1: multi-task vs single-task fine-tuning", lines)])


def rq5_section(ctx: Context) -> SectionOutput:
    opt = ctx.options
    lines = []
    if not any(j.strategy == TC for j in ctx.study.jobs):
        lines.append("not applicable: no token-controlled job among the results")
    verdicts = Counter()
    for f in ctx.analysis.rq5:
        for r in f["rows"]:
            verdicts[r.get("verdict")] += 1
            if not r.get("n"):
                lines.append(f"{r['model']} {r['task']}: {r.get('verdict')} (n/a: {r['reason']})")
                continue
            ps = r["parity_summary"]
            st = r.get("single_task") or {}
            lines.append(
                f"{r['model']} {r['task']} ({r['primary_metric']}, {f['multi_task_experiment']}): "
                f"verdict {r['verdict'].upper()} — {r['verdict_reason']}")
            lines.append(
                f"    ST {_pts(st.get('mean'), False)}, MT {_pts(float(np.mean(r['values_a'])), False)} "
                f"({r['mt_tokens_mean']:,.0f} tokens), TC {_pts(float(np.mean(r['values_b'])), False)} "
                f"({r['tc_tokens_mean']:,.0f} tokens); parity: {ps['detail']}; "
                f"MT − TC {_pts(r['mean_diff'])} points, paired-bootstrap 95% CI "
                f"{_ci((r.get('paired_bootstrap') or {}).get('low'), (r.get('paired_bootstrap') or {}).get('high'))}, "
                f"paired t p {_p(r['paired_t']['p'])}, Holm p {_p(r['p_holm'])}; token efficiency "
                f"MT {_num(r['mt_efficiency'], '.4f')}, TC {_num(r['tc_efficiency'], '.4f')} per "
                f"million tokens; MDE (80% power) {_pts(r['mde']['raw'], False)} points")
    if verdicts:
        lines.insert(0, "verdicts: " + ", ".join(f"{k}: {v}" for k, v in sorted(
            verdicts.items(), key=lambda kv: str(kv[0]))))
    return SectionOutput(
        tables={"table_rq5_token_controlled.tex": tables.rq5_table(
            ctx.env, ctx.analysis.rq5, opt.alpha, opt.parity_threshold, ctx.source)},
        statistics={"rq5": ctx.analysis.rq5},
        summary=[SummaryBlock("RQ5: token-controlled transfer analysis", lines)])


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
                sections: list[Section] | None = None) -> dict[str, Any]:
    """Read ``results``, run every section, write every output into ``out``.

    Returns {"written": [paths], "jobs": n, "skipped": [...]}. Raises
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
    source = ", ".join(str(r) for r in results)
    ctx = Context(study, analysis, tables.environment(), options, tables.latex_escape(source))
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
    preamble += [f"skipped: {s.path}: {s.reason}" for s in study.skipped]
    preamble += [f"note: {n}" for n in study.notes]
    text = ctx.env.get_template("SUMMARY.txt.j2").render(
        title="Multi-task transfer study: summary", preamble=preamble, sections=blocks)
    atomic_write_text(out / "SUMMARY.txt", text if text.endswith("\n") else text + "\n")
    written.append(out / "SUMMARY.txt")
    return {"written": [str(p) for p in written], "jobs": len(study.jobs),
            "skipped": [(s.path, s.reason) for s in study.skipped]}
