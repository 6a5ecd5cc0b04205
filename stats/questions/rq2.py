"""RQ2: shared-adapter multi-task vs parameter-matched single-task on held-out tasks.

Input files (results/README.md, "RQ2 held-out evaluation"): each finished source job may hold
``<job_dir>/heldout/<task>/seed<k>/heldout.json`` plus the predictions it names.  A *source
system* is (model, strategy, experiment, source tasks) of jobs trained with an adapter
(``config.adapter`` not null).  For every held-out task a comparison pairs a multi-task source
experiment with a single-task one of the same model:

* matched units are (source seed, held-out seed) present on both sides;
* Δ = mean over matched units of primary(MT) − primary(ST), both on the same test units;
* paired percentile bootstrap over test units (joined on ``unit_id``; every run of both sides
  sees the same resampled units, B resamples, fixed seed): 95% CI of Δ, and the two-sided
  bootstrap p = min(1, 2 · min(P*(Δ* ≤ 0), P*(Δ* ≥ 0))); Holm across the held-out tasks of
  one (model, MT experiment, ST system) family;
* beside it the paired t-test over the matched units (seed level, n small).

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

from stats.core import tests
from stats.core.metrics import metric_names, point_metrics
from stats.core.unit_bootstrap import paired_unit_bootstrap
from stats.questions.context import Context, SectionOutput, output
from stats.read.heldout import HeldoutRun, load_heldout
from stats.read.results import (
    MT,
    ST,
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
    return {**base, "units": units, "n": len(ra), "primary_metric": ra[0].primary_metric,
            "mt_mean": float(np.mean(va)), "st_mean": float(np.mean(vb)),
            "mean_diff": float(np.mean(va) - np.mean(vb)), "bootstrap": boot,
            "paired_t": tests.paired_t(va, vb), "reason": boot["reason"]}


def _holm(rows: list[dict], alpha: float) -> None:
    """Holm across one family's bootstrap p-values."""
    adjusted = tests.holm([(r.get("bootstrap") or {}).get("p_boot") for r in rows], alpha)
    for r, p in zip(rows, adjusted):
        r["p_holm"] = p
        r["significant"] = None if p is None else bool(p < alpha)
        r["holm_family_size"] = sum(q is not None for q in adjusted)


def verdict(row: dict) -> str | None:
    """MT better / ST better / no significant difference (Holm); None without a test."""
    boot = row.get("bootstrap") or {}
    if row.get("p_holm") is None or boot.get("delta") is None:
        return None
    if row["significant"]:
        return "MT better" if boot["delta"] > 0 else "ST better"
    return "no significant difference"


Runs = dict[tuple[int, int], HeldoutRun]  # (source seed, held-out seed) -> run
Systems = dict[tuple, dict[str, Runs]]  # _system_key -> held-out task -> runs


def comparisons(runs: Sequence[HeldoutRun], *, resamples: int = 10_000,
                rng_seed: int = 0, alpha: float = 0.05, level: float = 0.95,
                contamination=None) -> list[dict]:
    """RQ2 rows: one per (model, MT experiment, ST system, held-out task); Holm per family.
    With a usable ``contamination`` every compared row also gets ``clean``
    (:func:`clean_row`), Holm-adjusted across the family's clean rows."""
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
                family = _family(model, mt, st, by_system, contamination,
                                 resamples=resamples, rng_seed=rng_seed, level=level)
                _holm(family, alpha)
                _holm([r["clean"] for r in family if "clean" in r], alpha)
                rows.extend(family)
    return rows


def _trainable(systems: Systems, key: tuple) -> float | None:
    """Mean trainable parameters of the system's source jobs."""
    return _mean_or_none([trainable_params(r.source) for u in systems[key].values()
                          for r in u.values()])


def _family(model: str, mt: tuple, st: tuple, systems: Systems, contamination, *,
            resamples: int, rng_seed: int, level: float) -> list[dict]:
    """One (MT system, ST system) family: a row per held-out task either side ran."""
    mt_train, st_train = _trainable(systems, mt), _trainable(systems, st)
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
               mean_diff=float(np.mean(va) - np.mean(vb)),
               bootstrap=boot, paired_t=tests.paired_t(va, vb),
               budget=a[0].budget,
               train_mode=sorted({r.train_mode for r in a} | {r.train_mode for r in b}),
               reason=boot["reason"])
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


def table(rows: Sequence[dict]) -> str:
    """LaTeX: Δ = MT − ST in points with its 95% bootstrap CI, Holm p, parameter gap."""
    header = ["Model", "Held-out task", "MT (exp.)", "ST (exp.: tasks)", "n", "MT", "ST",
              r"Δ [95% CI]", "p (Holm)", "Params MT/ST (gap)"]
    body = []
    fn = PlainFootnotes()  # long reasons go to the notes: the table keeps the page width
    for r in rows:
        if r.get("task") is None:
            body.append([latex_escape(f"{r['model']}: ") + fn.na(str(r["reason"]))])
            continue
        boot = r.get("bootstrap") or {}
        mark = r"$^{*}$" if r.get("significant") else ""
        if boot.get("delta") is not None and boot.get("low") is not None:
            diff = (f"{fmt(boot['delta'], 1, 100, True)}{mark} "
                    f"[{fmt(boot['low'], 1, 100, True)}, {fmt(boot['high'], 1, 100, True)}]"
                    + (r"$^{\dagger}$" if r.get("budget_note") else ""))
        else:
            diff = fn.na(str(r.get("reason")))
        params = NA
        if r.get("mt_trainable") is not None and r.get("st_trainable") is not None:
            params = (f"{millions(r['mt_trainable'])}M / {millions(r['st_trainable'])}M "
                      f"({fmt(r['param_relative_gap'], 1, 100)}\\%)")
        body.append([latex_escape(r["model"]), latex_escape(r["task"]),
                     latex_escape(r["mt_experiment"]),
                     latex_escape(f"{r['st_experiment']}: {r['st_tasks']}"), str(r["n"]),
                     fmt(r.get("mt_mean"), 1, 100), fmt(r.get("st_mean"), 1, 100), diff,
                     fmt(r.get("p_holm"), 3), params])
    return simple_table(
        header, body, align="llllrrrlrl", label="tab:rq2_heldout", size=r"\scriptsize",
        caption="RQ2: shared-adapter multi-task vs parameter-matched single-task encoders on "
                "held-out tasks (primary metric, points; Δ = MT − ST with paired bootstrap 95% "
                "CI over test units; p Holm-adjusted across held-out tasks; * p < 0.05).",
        notes=["Params: mean trainable parameters of the source jobs and |ST − MT| / MT."]
        + ([("† The fresh heads of the two sides trained on different numbers of examples "
            "(results from before [heldout] batch_size): not a like-for-like comparison.")]
           if any(r.get("budget_note") for r in rows) else []) + fn.notes())


def summary_lines(rows: Sequence[dict], reason: str | None) -> list[str]:
    if reason:
        return [f"not applicable: {reason}"]
    lines = []
    for r in rows:
        if r.get("task") is None:
            lines.append(f"{r['model']}: n/a: {r['reason']}")
            continue
        boot = r.get("bootstrap") or {}
        head = (f"{r['model']} {r['task']}: MT {r['mt_experiment']} vs ST {r['st_experiment']} "
                f"({r['st_tasks']})")
        if boot.get("low") is None:
            lines.append(f"{head}: n/a: {r.get('reason')}")
            continue
        warn = f" WARNING: {r['budget_note']}" if r.get("budget_note") else ""
        lines.append(f"{head}: delta {fmt(boot['delta'], 1, 100, True)} points, 95% CI "
                     f"[{fmt(boot['low'], 1, 100, True)}, {fmt(boot['high'], 1, 100, True)}], "
                     f"Holm p {fmt(r['p_holm'], 3)} over {r['n']} matched runs -> "
                     f"{verdict(r) or 'no test'}; trainable params MT {fmt(r['mt_trainable'], 0)}"
                     f", ST {fmt(r['st_trainable'], 0)} (gap "
                     f"{fmt(r['param_relative_gap'], 1, 100)}%){warn}")
        if "clean" in r:
            lines.append(clean_line(r))
    return lines


def clean_line(r: dict) -> str:
    """The row's clean-unit result, indented under it."""
    c = r["clean"]
    boot = c.get("bootstrap") or {}
    if not c.get("n") or boot.get("low") is None:
        return f"    clean units: n/a ({c.get('reason')})"
    full, now = verdict(r), verdict(c)
    return (f"    {clean_units_text(c)}: delta "
            f"{fmt(boot['delta'], 1, 100, True)} points, 95% CI [{fmt(boot['low'], 1, 100, True)}"
            f", {fmt(boot['high'], 1, 100, True)}], Holm p {fmt(c['p_holm'], 3)} -> "
            f"{now or 'no test'} ({'unchanged' if now == full else 'CHANGES'})")


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
        tables["table_rq2_heldout.tex"] = table(stats_["rows"])
    ctx.shared["rq2_rows"] = stats_["rows"]
    return output(tables, {}, {"rq2": stats_},
                  "RQ2: out-of-distribution transfer with shared adapters",
                  summary_lines(stats_["rows"], stats_["reason"]))
