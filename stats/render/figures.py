"""The paper's figures (matplotlib, Agg): each function returns a Figure, and
``stats.report`` writes it. These use no pyplot state; the RQ3/RQ4 subplot grids (in their
question modules) get pyplot from :func:`pyplot` and are released after writing.

* strategy bars: ST / MT / TC primary metric per task with 95% intervals;
* validation curves: validation primary metric against training tokens (validation_history);
* transfer heatmap: mean MT − ST per task for each multi-task task combination.

With nothing to draw, a figure says so (and why) instead of failing.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np
from matplotlib.figure import Figure

from mtl_contract.schema import MT, ST, TC
from stats.core import controls
from stats.core.analysis import Analysis
from stats.core.study import Study
from stats.render.names import Names

STRATEGY_COLOURS = {ST: "#4c72b0", MT: "#dd8452", TC: "#55a868"}
HATCHES = ("", "//", "..", "xx", "\\\\")
STRATEGY_SHORT = {ST: "ST", MT: "MT", TC: "TC"}


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display; safe on a headless machine): the
    RQ3 and RQ4 figures use its subplot grids."""
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def release(fig: Figure) -> None:
    """Let pyplot forget ``fig`` once it is written: pyplot keeps every figure it made (the
    RQ3 and RQ4 ones) open until closed; the others are not its to close (a no-op)."""
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)


def _empty(reason: str) -> Figure:
    fig = Figure(figsize=(5, 2))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, f"not applicable: {reason}", ha="center", va="center", wrap=True)
    return fig


def _interval(system: dict[str, Any]) -> tuple[float, float, float] | None:
    """(centre, low, high): bootstrap over test units, else the seed t-interval."""
    boot = system.get("bootstrap") or {}
    if boot.get("low") is not None:
        return boot["point"], boot["low"], boot["high"]
    seed = system.get("seed_interval") or {}
    if seed.get("low") is not None:
        return seed["mean"], seed["low"], seed["high"]
    return None


def _names(analysis: Analysis) -> Names:
    """Short names for the systems' labels (the set of every task -> "[all N]")."""
    return Names([s["experiment"] for s in analysis.systems],
                 {s["task"] for s in analysis.systems})


def _key_text(names: Names) -> str:
    """The shortened names a figure used, spelled out, one per line."""
    return "\n".join(f"{a} = {b}" for a, b in names.key(used_only=True))


def strategy_bars(analysis: Analysis) -> Figure:
    """Bars of the primary test metric (× 100) per task and system, one panel per model; one
    legend for the figure below the panels, long system names shortened with a key."""
    systems = [s for s in analysis.systems if s["mean"] is not None]
    if not systems:
        return _empty("no results")
    names = _names(analysis)
    models = sorted({s["model"] for s in systems})
    fig = Figure(figsize=(max(6.0, 1.6 * len({s['task'] for s in systems}) + 2),
                          3.2 * len(models) + 1.5), layout="constrained")
    legend: dict[str, Any] = {}
    for mi, model in enumerate(models):
        ax = fig.add_subplot(len(models), 1, mi + 1)
        mine = [s for s in systems if s["model"] == model]
        tasks = sorted({s["task"] for s in mine})
        labels = sorted({(s["strategy"], s["experiment"]) for s in mine},
                        key=lambda k: (list(STRATEGY_COLOURS).index(k[0]), k[1]))
        width = 0.8 / len(labels)
        for li, (strategy, exp) in enumerate(labels):
            xs, ys, err_lo, err_hi = [], [], [], []
            for ti, task in enumerate(tasks):
                s = next((x for x in mine if (x["strategy"], x["experiment"], x["task"])
                          == (strategy, exp, task)), None)
                if s is None:
                    continue
                ci = _interval(s)
                centre = s["mean"]
                xs.append(ti - 0.4 + width * (li + 0.5))
                ys.append(100 * centre)
                err_lo.append(100 * max(centre - ci[1], 0) if ci else 0.0)
                err_hi.append(100 * max(ci[2] - centre, 0) if ci else 0.0)
            # several experiments of one strategy share its colour, told apart by hatching
            nth = [k for k in labels if k[0] == strategy].index((strategy, exp))
            bars = ax.bar(xs, ys, width, yerr=[err_lo, err_hi], capsize=2,
                          color=STRATEGY_COLOURS[strategy], alpha=0.9,
                          hatch=HATCHES[nth % len(HATCHES)], edgecolor="white")
            legend.setdefault(f"{STRATEGY_SHORT[strategy]} ({names(exp)})", bars)
        ax.set_xticks(range(len(tasks)), tasks)
        ax.set_ylabel("primary metric × 100")
        ax.set_title(f"{model}: mean over seeds, 95% bootstrap CI over test examples")
        ax.grid(axis="y", alpha=0.3)
    key = _key_text(names)
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", fontsize=7,
               ncols=min(len(legend), 4), title=key or None, title_fontsize=7)
    return fig


def validation_curves(study: Study) -> Figure:
    """Validation primary metric against training tokens, one panel per task, one line per
    job (colour = strategy)."""
    lines: dict[str, list[tuple[str, list[float], list[float]]]] = {}
    for job in study.jobs:
        for task in job.tasks:
            metric = job.per_task[task].primary_metric
            pts = [(h.get("tokens"), (h.get("metrics") or {}).get(task, {}).get(metric))
                   for h in job.validation_history]
            pts = [(float(x), float(y)) for x, y in pts
                   if isinstance(x, (int, float)) and isinstance(y, (int, float))
                   and math.isfinite(x) and math.isfinite(y)]
            if pts:
                pts.sort()
                lines.setdefault(task, []).append(
                    (job.strategy, [p[0] / 1e6 for p in pts], [p[1] for p in pts]))
    if not lines:
        return _empty("no job recorded a validation_history")
    tasks = sorted(lines)
    ncols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows))
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        seen = set()
        for strategy, xs, ys in lines[task]:
            ax.plot(xs, ys, marker=".", lw=1, alpha=0.7, color=STRATEGY_COLOURS[strategy],
                    label=None if strategy in seen else STRATEGY_SHORT[strategy])
            seen.add(strategy)
        ax.set_title(task)
        ax.set_xlabel("training tokens (millions)")
        ax.set_ylabel("validation primary metric")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def transfer_heatmap(analysis: Analysis) -> Figure:
    """Mean MT − ST (points) per task (columns) for each model and multi-task task
    combination (rows); blank where the combination does not include the task or no
    seed is matched."""
    rows, values = [], []
    for fam in analysis.multitask:
        if fam["multi_task_experiment"] is None:
            continue
        rows.append((fam["model"], fam["multi_task_experiment"], fam["rows"]))
    tasks = sorted({r["task"] for _, _, rs in rows for r in rs})
    if not rows or not tasks:
        return _empty("no multi-task experiment with a single-task baseline")
    for _, _, rs in rows:
        by_task = {r["task"]: r for r in rs}
        values.append([100 * by_task[t]["mean_diff"] if t in by_task
                       and by_task[t].get("mean_diff") is not None else np.nan for t in tasks])
    data = np.ma.masked_invalid(np.asarray(values, dtype=float))
    if data.mask.all():
        return _empty("no task has a matched single-task and multi-task seed")
    lim = float(np.nanmax(np.abs(data.filled(np.nan)))) or 1.0
    names = _names(analysis)
    fig = Figure(figsize=(1.1 * len(tasks) + 4, 0.6 * len(rows) + 2.4), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(data, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(tasks)):
            if not data.mask[i, j]:
                ax.text(j, i, f"{data[i, j]:+.1f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), [f"{m}: {names(e)}" for m, e, _ in rows])
    fig.colorbar(im, ax=ax, label="MT − ST (points)")
    ax.set_title("Transfer over task combinations\n(mean MT − ST over matched seeds)")
    key = _key_text(names)
    if key:
        ax.set_xlabel(key, fontsize=7)
    return fig


def contamination_heatmap(rows: list[dict[str, Any]], n: int | None,
                          reason: str | None = None) -> Figure:
    """Share of each test task's units (rows) that overlap each training task's training
    units (columns), exact or n-gram, annotated with the count; from
    stats.read.contamination.overlap_rows. A square-root colour scale: most shares are well under
    1%, a few are tens of percent."""
    from matplotlib.colors import PowerNorm

    pairs = [r for r in rows if r["train_task"] is not None]
    if reason is not None or not pairs:
        return _empty(reason or "no task of the study is in the contamination file")
    tests = list(dict.fromkeys(r["test_task"] for r in pairs))
    trains = list(dict.fromkeys(r["train_task"] for r in pairs))
    share = np.full((len(tests), len(trains)), np.nan)
    count = np.zeros((len(tests), len(trains)), dtype=int)
    for r in pairs:
        i, j = tests.index(r["test_task"]), trains.index(r["train_task"])
        share[i, j] = 100 * (r["share"] or 0.0)
        count[i, j] = r["any"]
    fig = Figure(figsize=(0.75 * len(trains) + 3.5, 0.5 * len(tests) + 2.2))
    ax = fig.add_subplot()
    top = max(float(np.nanmax(share)), 1e-9)
    im = ax.imshow(share, cmap="Reds", norm=PowerNorm(0.5, vmin=0, vmax=top), aspect="auto")
    for i in range(len(tests)):
        for j in range(len(trains)):
            if count[i, j]:
                ax.text(j, i, str(count[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > top / 2 else "black")
    ax.set_xticks(range(len(trains)), trains, rotation=40, ha="right")
    ax.set_yticks(range(len(tests)), tests)
    ax.set_xlabel("training task")
    ax.set_ylabel("test task")
    fig.colorbar(im, ax=ax, label="test units overlapping (%)")
    ax.set_title(f"Test units overlapping training units\n(exact or {n}-gram; count in cell)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def rq5_bars(analysis: Analysis) -> Figure:
    """The RQ5 figure: per task, ST, MT and TC (primary metric × 100, mean over the seeds all
    three ran) with seed-level 95% t-intervals; one panel per model and parity mode, each
    on the model's largest multi-task set (the all-8 set where there is one); * over a task
    whose verdict is genuine transfer."""
    from stats.core.significance import GENUINE, seed_interval

    panels: dict[tuple[str, str], dict[str, Any]] = {}
    for fam in analysis.rq5:
        rows = [r for r in fam["rows"] if "parity_summary" in r]
        if fam["model"] is None or not rows or fam.get("control") == controls.TEXT:
            continue
        key = (fam["model"], str(fam.get("parity_mode")))
        if key not in panels or len(fam["rows"]) > len(panels[key]["rows"]):
            panels[key] = fam
    if not panels:
        return _empty("no task has multi-task and token-controlled runs sharing a seed")
    names = _names(analysis)
    models = sorted({k[0] for k in panels})
    modes = sorted({k[1] for k in panels})
    tasks_max = max(len(f["rows"]) for f in panels.values())
    fig = Figure(figsize=(max(4.5, 0.9 * tasks_max + 1.5) * len(modes), 2.8 * len(models) + 1.0),
                 layout="constrained")
    handles = {}
    for (model, mode), fam in sorted(panels.items()):
        ax = fig.add_subplot(len(models), len(modes),
                             models.index(model) * len(modes) + modes.index(mode) + 1)
        rows = [r for r in fam["rows"] if "parity_summary" in r]
        for ti, r in enumerate(rows):
            st = (r.get("mt_minus_st") or {}).get("values_b") or []
            for k, (name, values) in enumerate((("ST", st), ("MT", r["values_a"]),
                                                ("TC", r["values_b"]))):
                if not values:
                    continue
                iv = seed_interval(values)
                mean = 100 * iv["mean"]
                err = ([[mean - 100 * iv["low"]], [100 * iv["high"] - mean]]
                       if iv.get("low") is not None else None)
                colour = STRATEGY_COLOURS[{"ST": ST, "MT": MT, "TC": TC}[name]]
                bar = ax.bar(ti + (k - 1) * 0.27, mean, 0.27, yerr=err, capsize=2, color=colour)
                handles.setdefault(name, bar)
            if r.get("verdict") == GENUINE:
                ax.annotate("*", (ti, 1.0), xycoords=("data", "axes fraction"), ha="center",
                            va="top", fontsize=12)
        ax.set_xticks(range(len(rows)), [r["task"] for r in rows], rotation=30, ha="right",
                      fontsize=8)
        ax.set_ylabel("primary metric × 100", fontsize=8)
        ax.set_title(f"{model}, parity {mode}\n{names(fam['multi_task_experiment'])} vs "
                     f"{str(fam['token_controlled_experiment']).split('[')[0]}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    key = _key_text(names)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncols=3, fontsize=8, title=("* genuine transfer; bars: mean over seeds, 95% "
                                           "seed-level t-interval" + (f"\n{key}" if key else "")),
               title_fontsize=7)
    return fig
