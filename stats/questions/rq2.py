"""RQ2: shared-adapter multi-task vs parameter-matched single-task on held-out tasks.

Input files (results/README.md, "RQ2 held-out evaluation"): each finished source job may hold
``<job_dir>/heldout/<task>/seed<k>/heldout.json`` plus the predictions it names.  A *source
system* is (model, strategy, experiment, source tasks) of jobs trained with an adapter
(``config.adapter`` not null).  For every held-out task a comparison pairs a multi-task source
experiment with a single-task one of the same model:

* matched units are (source seed, held-out seed) present on both sides;
* the test is over source seeds, the replicates of the encoder training: per
  source seed, each side's primary metric averaged over its matched held-out seeds (the
  head seeds are nested in it), then Δ = mean over source seeds of MT − ST, its paired
  t-interval and the two-sided paired t-test; Holm across every RQ2 comparison (all models,
  systems and held-out tasks: the family SUMMARY.txt's RQ2 claim covers);
* secondary, beside it: the paired percentile bootstrap over test units (joined on
  ``unit_id``; every run of both sides sees the same resampled units, B resamples, fixed
  seed), its CI and two-sided p = min(1, 2 · min(P*(Δ* ≤ 0), P*(Δ* ≥ 0))) -- test-set
  uncertainty only, reported, not used for the verdict.

Parameter matching is reported, not assumed: the mean trainable parameters of both source
systems (``model_params.trainable`` of their result.json) and their relative gap
|ST − MT| / MT.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from mtl_contract.schema import MT, ST
from stats.core import significance
from stats.core.metrics import metric_names, point_metrics
from stats.core.unit_bootstrap import paired_unit_bootstrap
from stats.questions.context import Context, SectionOutput, output
from stats.read.heldout import HeldoutRun, load_heldout
from stats.read.results import (
    JobResult,
    PredictionsUnavailable,
    TaskResult,
    adapter_of,
    read_predictions,
    trainable_params,
)
from stats.render.latex import PlainFootnotes, latex_escape, simple_table
from stats.render.numbers import NA, fmt, millions
from stats.render.summary import clean_units_text


def _system_key(job: JobResult) -> tuple[str, str, str, str]:
    return (job.model, job.strategy, job.experiment, "+".join(job.tasks))


def _mean_or_none(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _clean_values(results: Sequence[TaskResult], exclude: frozenset[str]):
    """(each run's primary metric on its units less ``exclude``, unit counts) or a reason."""
    values, ids = [], None
    for tr in results:
        try:
            kind, spec, frame = read_predictions(tr)
        except PredictionsUnavailable as err:
            return f"predictions unavailable: {err}"
        if tr.primary_metric not in metric_names(kind, spec):
            return f"{tr.primary_metric} cannot be recomputed from stat_spec kind {kind!r}"
        keep = frame[~frame.index.isin(exclude)]
        if keep.empty:
            return f"all {len(frame)} test units overlap the training data"
        value = point_metrics(kind, spec, keep)[tr.primary_metric]
        if not math.isfinite(value):
            return f"{tr.primary_metric} is undefined on the {len(keep)} clean units"
        values.append(value)
        ids = frame.index if ids is None else ids.union(frame.index)
    dropped = int(ids.isin(exclude).sum())
    return values, {"test_units": len(ids), "dropped": dropped, "clean": len(ids) - dropped,
                    "overlapping_in_split": len(exclude)}


def clean_row(row: dict, ra: Sequence[TaskResult], rb: Sequence[TaskResult], contamination, *,
              resamples: int, rng_seed: int, level: float) -> dict:
    """The row's comparison on its clean test units: those overlapping no training unit of a
    task either source job trained on, nor of the held-out task (its fresh head trains on
    it); the same units for both sides. ``contamination``: a usable
    :class:`stats.read.contamination.Contamination`."""
    train = sorted(set(row["mt_tasks"].split("+")) | set(row["st_tasks"].split("+"))
                   | {row["task"]})
    base = {"train_tasks": train, "units": None, "n": 0, "p_holm": None, "significant": None}
    excluded = contamination.excluded(row["task"], train)
    if isinstance(excluded, str):
        return {**base, "reason": excluded}
    got = _clean_values(list(ra) + list(rb), excluded)
    if isinstance(got, str):
        return {**base, "reason": got}
    values, units = got
    va, vb = values[:len(ra)], values[len(ra):]
    boot = paired_unit_bootstrap(ra, rb, resamples, rng_seed, level, exclude=excluded)
    seed = seed_level(row["matched_units"], va, vb, level)
    return {**base, "units": units, "n": len(ra), "primary_metric": ra[0].primary_metric,
            "mt_mean": float(np.mean(va)), "st_mean": float(np.mean(vb)), **seed,
            "bootstrap": boot, "reason": seed["paired_t"]["reason"]}


def seed_level(units: Sequence[Sequence[int]], va: Sequence[float], vb: Sequence[float],
               level: float) -> dict:
    """The test over source seeds: each side's values (one per matched (source seed,
    held-out seed) unit) averaged within a source seed, then the paired t-test, its
    t-interval and the mean difference over source seeds."""
    by_seed: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for (source, _), a, b in zip(units, va, vb):
        by_seed[source].append((a, b))
    seeds = sorted(by_seed)
    a = [float(np.mean([x for x, _ in by_seed[s]])) for s in seeds]
    b = [float(np.mean([y for _, y in by_seed[s]])) for s in seeds]
    diffs = [x - y for x, y in zip(a, b)]
    return {"source_seeds": seeds, "seed_values_a": a, "seed_values_b": b,
            "mean_diff": float(np.mean(diffs)), "paired_t": significance.paired_t(a, b),
            "diff_interval": significance.seed_interval(diffs, level)}


def _holm(rows: list[dict], alpha: float) -> None:
    """Holm across the rows' seed-level paired t p-values (the whole RQ2 family)."""
    adjusted = significance.holm([(r.get("paired_t") or {}).get("p") for r in rows], alpha)
    for r, p in zip(rows, adjusted):
        r["p_holm"] = p
        r["significant"] = None if p is None else bool(p < alpha)
        r["holm_family_size"] = sum(q is not None for q in adjusted)


def verdict(row: dict) -> str | None:
    """MT better / ST better / no significant difference (seed-level test, Holm); None
    without a test."""
    if row.get("p_holm") is None or row.get("mean_diff") is None:
        return None
    if row["significant"]:
        return "MT better" if row["mean_diff"] > 0 else "ST better"
    return "no significant difference"


Runs = dict[tuple[int, int], HeldoutRun]  # (source seed, held-out seed) -> run
Systems = dict[tuple, dict[str, Runs]]  # _system_key -> held-out task -> runs


def comparisons(runs: Sequence[HeldoutRun], *, resamples: int = 10_000,
                rng_seed: int = 0, alpha: float = 0.05, level: float = 0.95,
                contamination=None) -> list[dict]:
    """RQ2 rows: one per (model, MT experiment, ST system, held-out task); Holm across all of
    them. With a usable ``contamination`` every compared row also gets ``clean``
    (:func:`clean_row`), Holm-adjusted across all clean rows."""
    by_system: Systems = defaultdict(lambda: defaultdict(dict))
    for r in runs:
        if adapter_of(r.source) is None:
            continue  # RQ2 compares adapter-trained encoders only
        by_system[_system_key(r.source)][r.task][(r.source.seed, r.seed)] = r
    rows: list[dict] = []
    for model in sorted({k[0] for k in by_system}):
        mt_sys = sorted(k for k in by_system if k[0] == model and k[1] == MT)
        st_sys = sorted(k for k in by_system if k[0] == model and k[1] == ST)
        if not mt_sys or not st_sys:
            missing = "multi-task" if not mt_sys else "single-task"
            rows.append({"model": model, "mt_experiment": None, "st_system": None,
                         "task": None, "reason": f"no {missing} adapter job has held-out "
                                                 "results", "significant": None})
            continue
        for mt in mt_sys:
            for st in st_sys:
                rows.extend(_family(model, mt, st, by_system, contamination,
                                    resamples=resamples, rng_seed=rng_seed, level=level))
    compared = [r for r in rows if r.get("task") is not None]
    _holm(compared, alpha)
    _holm([r["clean"] for r in compared if "clean" in r], alpha)
    return rows


def _trainable(systems: Systems, key: tuple, which: str = "trainable") -> float | None:
    """Mean trainable parameters (``which``: model_params key) of the system's source jobs;
    None unless every source job recorded it."""
    values = [trainable_params(r.source, which) for u in systems[key].values()
              for r in u.values()]
    return None if not values or None in values else _mean_or_none(values)


# What the parameter gap compares: the encoder's trainable parameters (what reaches a held-out
# task; the heads are thrown away there) where both sides recorded them, else all trainable.
PARAM_BASES = {"encoder": "encoder_trainable", "with heads": "trainable"}


def _family(model: str, mt: tuple, st: tuple, systems: Systems, contamination, *,
            resamples: int, rng_seed: int, level: float) -> list[dict]:
    """One (MT system, ST system) family: a row per held-out task either side ran."""
    counts = {basis: (_trainable(systems, mt, key), _trainable(systems, st, key))
              for basis, key in PARAM_BASES.items()}
    basis = "encoder" if None not in counts["encoder"] else "with heads"
    mt_train, st_train = counts[basis]
    gap = None if mt_train in (None, 0) or st_train is None else \
        abs(st_train - mt_train) / mt_train
    matched_to = {(adapter_of(r.source) or {}).get("matched_to", {}).get("experiment")
                  for u in systems[st].values() for r in u.values()
                  if isinstance((adapter_of(r.source) or {}).get("matched_to"), dict)}
    family = []
    for task in sorted(set(systems[mt]) | set(systems[st])):
        a_runs, b_runs = systems[mt].get(task, {}), systems[st].get(task, {})
        keys = sorted(set(a_runs) & set(b_runs))
        row = {"model": model, "mt_experiment": mt[2], "mt_tasks": mt[3],
               "st_experiment": st[2], "st_tasks": st[3], "st_system": f"{st[2]}:{st[3]}",
               "task": task, "n": len(keys), "matched_units": [list(k) for k in keys],
               "mt_trainable": mt_train, "st_trainable": st_train,
               "param_basis": basis,   # which count mt_/st_trainable and the gap are
               "mt_trainable_with_heads": counts["with heads"][0],
               "st_trainable_with_heads": counts["with heads"][1],
               "mt_encoder_trainable": counts["encoder"][0],
               "st_encoder_trainable": counts["encoder"][1],
               "param_relative_gap": gap,
               "param_matched_to_mt": mt[2] in matched_to,
               "p_holm": None, "significant": None}
        if not keys:
            side = "multi-task" if not a_runs else "single-task" if not b_runs \
                else "both (no common source/held-out seed)"
            row.update(reason=f"no matched held-out runs: missing on {side}",
                       mt_mean=None, st_mean=None, mean_diff=None,
                       bootstrap=None, paired_t=None)
        else:
            _compare(row, [a_runs[k] for k in keys], [b_runs[k] for k in keys], contamination,
                     resamples=resamples, rng_seed=rng_seed, level=level)
        family.append(row)
    return family


def _compare(row: dict, a: list[HeldoutRun], b: list[HeldoutRun], contamination, *,
             resamples: int, rng_seed: int, level: float) -> None:
    """Fill ``row`` with the matched runs' means, bootstrap, paired t (and clean units)."""
    ra, rb = [r.result for r in a], [r.result for r in b]
    va = [r.metrics[r.primary_metric] for r in ra]
    vb = [r.metrics[r.primary_metric] for r in rb]
    boot = paired_unit_bootstrap(ra, rb, resamples, rng_seed, level)
    # the fresh heads must have had the same budget on both sides
    row["budget_note"] = _budget_note(a, b)
    row.update(primary_metric=ra[0].primary_metric,
               mt_mean=float(np.mean(va)), st_mean=float(np.mean(vb)),
               **seed_level(row["matched_units"], va, vb, level),
               bootstrap=boot, budget=a[0].budget,
               train_mode=sorted({r.train_mode for r in a} | {r.train_mode for r in b}))
    row["reason"] = row["paired_t"]["reason"]
    if contamination is not None:
        row["clean"] = clean_row(row, ra, rb, contamination, resamples=resamples,
                                 rng_seed=rng_seed, level=level)


def _budget_note(a: Sequence[HeldoutRun], b: Sequence[HeldoutRun]) -> str | None:
    """None when both sides' fresh heads had the same budget: the same (max_steps,
    batch_size), or -- files from before heldout.json recorded batch_size -- the same numbers
    of training examples."""
    def budgets(runs, keys):
        return sorted({tuple(r.budget.get(k) for k in keys) for r in runs}, key=str)

    keys = (("max_steps", "batch_size")
            if all(r.budget.get("batch_size") is not None for r in [*a, *b]) else ("examples",))
    ba, bb = budgets(a, keys), budgets(b, keys)
    if ba == bb:
        return None
    show = (lambda v: [x[0] for x in v]) if keys == ("examples",) else (
        lambda v: [f"{x[0]} steps x {x[1]}" for x in v])
    what = "examples" if keys == ("examples",) else "(steps x batch)"
    return (f"unequal held-out budgets: MT heads trained on {show(ba)} {what}, "
            f"ST heads on {show(bb)}")


def _ci(ci: dict) -> str:
    """"[lo, hi]" in points of an interval dict (low, high); n/a without one."""
    return (f"[{fmt(ci['low'], 1, 100, True)}, {fmt(ci['high'], 1, 100, True)}]"
            if ci.get("low") is not None else NA)


def table(rows: Sequence[dict], alpha: float = 0.05) -> str:
    """LaTeX: Δ = MT − ST in points with its seed-level CI, p and Holm p over source seeds,
    parameter gap (the test-unit bootstrap, secondary, is in SUMMARY.txt and statistics.json:
    the table keeps the page width)."""
    level = f"{100 * (1 - alpha):g}"
    header = ["Model", "Held-out task", "MT (exp.)", "ST (exp.: tasks)", "Seeds (runs)", "MT",
              "ST", f"Δ [{level}% CI]", "p / p (Holm)",
              "Params MT / ST (gap)"]
    body = []
    fn = PlainFootnotes()  # long reasons go to the notes: the table keeps the page width
    for r in rows:
        if r.get("task") is None:
            body.append([latex_escape(f"{r['model']}: ") + fn.na(str(r["reason"]))])
            continue
        t = r.get("paired_t") or {}
        mark = r"$^{*}$" if r.get("significant") else ""
        if r.get("mean_diff") is None:
            diff, p = fn.na(str(r.get("reason"))), NA
        else:
            di = r.get("diff_interval") or {}
            ci = _ci(di) if di.get("low") is not None else latex_escape(f"[n/a: {di.get('reason')}]")
            diff = (f"{fmt(r['mean_diff'], 1, 100, True)}{mark} {ci}"
                    + (r"$^{\dagger}$" if r.get("budget_note") else ""))
            p = (f"{fmt(t['p'], 3)} / {fmt(r.get('p_holm'), 3)}" if t.get("p") is not None
                 else latex_escape(f"n/a: {t.get('reason')}"))
        params = NA
        if r.get("mt_trainable") is not None and r.get("st_trainable") is not None:
            params = (f"{millions(r['mt_trainable'])}M / {millions(r['st_trainable'])}M "
                      f"({fmt(r['param_relative_gap'], 1, 100)}\\%)"
                      + ("" if r.get("param_basis", "encoder") == "encoder" else "$^{h}$"))
        body.append([latex_escape(r["model"]), latex_escape(r["task"]),
                     latex_escape(r["mt_experiment"]),
                     latex_escape(f"{r['st_experiment']}: {r['st_tasks']}"),
                     f"{len(r.get('source_seeds') or [])} ({r['n']})",
                     fmt(r.get("mt_mean"), 1, 100), fmt(r.get("st_mean"), 1, 100), diff, p,
                     params])
    return simple_table(
        header, body, align="lllp{1.5cm}rrrllp{1.6cm}", label="tab:rq2_heldout", size=r"\scriptsize",
        caption="RQ2: shared-adapter multi-task vs parameter-matched single-task encoders on "
                f"held-out tasks (primary metric, points). Δ = MT − ST over source seeds (each "
                f"side averaged over its held-out head seeds) with its {level}% paired "
                "t-interval; p: paired t-test over source seeds, unadjusted / Holm-adjusted "
                f"across every RQ2 comparison in this table; * Holm p < {alpha:g}. The paired "
                "bootstrap over the held-out test units (test-set uncertainty only, secondary, "
                "not used for the verdict) is in SUMMARY.txt and statistics.json.",
        notes=[("Seeds (runs): source seeds tested (matched source x held-out seed runs). "
               "Params: mean trainable parameters of the source jobs' encoders (the LoRA "
               "that reaches the held-out task; the single-task ranks are matched on these) "
               "and |ST − MT| / MT.")]
        + ([("h: counts with the task heads: a source job recorded no encoder-side count "
             "(results written before encoder-side counts were recorded).")]
           if any(r.get("param_basis") == "with heads" for r in rows) else [])
        + ([("† The fresh heads of the two sides trained on different numbers of examples "
            "(results from before [heldout] batch_size): not a like-for-like comparison.")]
           if any(r.get("budget_note") for r in rows) else []) + fn.notes())


def _seed_text(r: dict) -> str:
    """Δ, its seed-level interval, p and Holm p: SUMMARY.txt's primary numbers of a row."""
    t, ci = r.get("paired_t") or {}, r.get("diff_interval") or {}
    pct = f"{100 * ci['level']:g}%" if ci.get("level") else "n/a"
    return (f"delta {fmt(r['mean_diff'], 1, 100, True)} points over "
            f"{len(r.get('source_seeds') or [])} source seed(s) ({r['n']} matched runs), "
            f"seed-level {pct} CI {_ci(ci)}, paired t p {fmt(t.get('p'), 3)}, Holm p "
            f"{fmt(r.get('p_holm'), 3)}" + (f" ({t['reason']})" if t.get("reason") else ""))


def _units_text(boot: dict) -> str:
    if boot.get("low") is None:
        return f"test-unit bootstrap n/a ({boot.get('reason')})"
    return (f"test-unit bootstrap (secondary) CI {_ci(boot)}, p "
            f"{fmt(boot['p_boot'], 3)} over {boot['n_units']} units")


def summary_lines(rows: Sequence[dict], reason: str | None) -> list[str]:
    if reason:
        return [f"not applicable: {reason}"]
    compared = [r for r in rows if r.get("task") is not None and r.get("p_holm") is not None]
    lines = [(f"tests: paired t over source seeds (held-out head seeds averaged within each), "
             f"Holm across all {len(compared)} RQ2 comparison(s) with a test; the test-unit "
             "bootstrap is secondary")]
    for r in rows:
        if r.get("task") is None:
            lines.append(f"{r['model']}: n/a: {r['reason']}")
            continue
        head = (f"{r['model']} {r['task']}: MT {r['mt_experiment']} vs ST {r['st_experiment']} "
                f"({r['st_tasks']})")
        if r.get("mean_diff") is None:
            lines.append(f"{head}: n/a: {r.get('reason')}")
            continue
        warn = f" WARNING: {r['budget_note']}" if r.get("budget_note") else ""
        lines.append(f"{head}: {_seed_text(r)} -> {verdict(r) or 'no test'}; "
                     f"{_units_text(r.get('bootstrap') or {})}; trainable params "
                     f"({r.get('param_basis', 'with heads')}) MT {fmt(r['mt_trainable'], 0)}"
                     f", ST {fmt(r['st_trainable'], 0)} (gap "
                     f"{fmt(r['param_relative_gap'], 1, 100)}%){warn}")
        if "clean" in r:
            lines.append(clean_line(r))
    return lines


def clean_line(r: dict) -> str:
    """The row's clean-unit result, indented under it."""
    c = r["clean"]
    if not c.get("n") or c.get("mean_diff") is None:
        return f"    clean units: n/a ({c.get('reason')})"
    full, now = verdict(r), verdict(c)
    return (f"    {clean_units_text(c)}: {_seed_text(c)} -> {now or 'no test'} "
            f"({'unchanged' if now == full else 'CHANGES'})")


def section(ctx: Context) -> SectionOutput:
    """RQ2's table, statistics.json entry and SUMMARY.txt block. With a usable contamination
    file every compared row also has its clean-unit result; the rows are left in
    ``ctx.shared["rq2_rows"]`` for the contamination section."""
    opt = ctx.options
    runs, skipped = load_heldout(ctx.study.jobs)
    stats_ = {"rows": [], "skipped": [asdict(s) for s in skipped], "resamples": opt.resamples,
              "seed": opt.seed, "alpha": opt.alpha, "level": opt.level, "reason": None}
    tables: dict[str, str] = {}
    if not runs:
        stats_["reason"] = "no held-out results (heldout/<task>/seed<k>/heldout.json) found"
    else:
        stats_["rows"] = comparisons(runs, resamples=opt.resamples, rng_seed=opt.seed,
                                     alpha=opt.alpha, level=opt.level,
                                     contamination=ctx.usable_contamination())
        tables["table_rq2_heldout.tex"] = table(stats_["rows"], opt.alpha)
    ctx.shared["rq2_rows"] = stats_["rows"]
    return output(tables, {}, {"rq2": stats_},
                  "RQ2: out-of-distribution transfer with shared adapters",
                  summary_lines(stats_["rows"], stats_["reason"]))
