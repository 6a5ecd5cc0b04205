"""RQ3: the efficiency frontier (primary metric vs size and vs latency) and calibration.

Input files (results/README.md, "RQ3 evaluation"): ``<job_dir>/evaluation/<level>.json`` per
finished job and precision level (fp32, fp16, bf16, int8, nf4), ``status`` "ok" or "skipped"
with the reason.

A *point* is (model, strategy, experiment, level, task, device) with the means over the seeds
that evaluated it there: primary metric, size on disk (bytes), latency (ms per example), ECE
before and after temperature scaling.  A point is on the frontier against a cost when no other
point of its group is at least as good on both axes and strictly better on one (metric higher,
cost lower): the non-dominated set; the group is the task for size, the task and the device
for latency (a CPU and a GPU latency are never on one frontier).  Reliability diagrams pool the
test-set bins of a point's seeds (counts summed, confidence and accuracy count-weighted).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from mtl_contract.schema import LEVELS
from stats.questions.context import Context, SectionOutput, output
from stats.read.evaluation import Evaluation, load_evaluations
from stats.render.figures import pyplot
from stats.render.latex import latex_escape, simple_table
from stats.render.numbers import NA, fmt


def pareto_mask(costs: Sequence[float], values: Sequence[float]) -> list[bool]:
    """True where no other point has cost ≤ and value ≥ with one of them strict.

    Lower cost is better, higher value is better; equal points do not dominate each other.
    """
    c = np.asarray(costs, dtype=float)
    v = np.asarray(values, dtype=float)
    out = []
    for i in range(len(c)):
        dominated = np.any((c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i])))
        out.append(not bool(dominated))
    return out


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def points(evals: Sequence[Evaluation]) -> list[dict]:
    """Seed-mean points per (model, strategy, experiment, level, task), frontier-marked."""
    groups: dict[tuple, list[tuple[Evaluation, dict]]] = defaultdict(list)
    for e in evals:
        if e.status != "ok":
            continue
        for task, entry in e.per_task.items():
            groups[(e.job.model, e.job.strategy, e.job.experiment, e.level, task,
                    device_label(e.device))].append((e, entry))
    rows = []
    for (model, strategy, exp, level, task, device), items in sorted(
            groups.items(), key=lambda kv: (kv[0][4], kv[0][5], kv[0][0], kv[0][2],
                                            LEVELS.index(kv[0][3]))):
        primaries = {entry["primary_metric"] for _, entry in items}
        cals = [entry.get("calibration") for _, entry in items]
        cals_ok = [c for c in cals if isinstance(c, dict)]
        cal_reasons = sorted({str(entry.get("calibration_reason")) for _, entry in items
                              if not isinstance(entry.get("calibration"), dict)})
        rows.append({
            "model": model, "strategy": strategy, "experiment": exp, "level": level,
            "task": task, "primary_metric": min(primaries),
            "seeds": sorted(e.job.seed for e, _ in items),
            "job_ids": sorted(e.job.job_id for e, _ in items),
            "metric": _mean([float(entry["metrics"][entry["primary_metric"]])
                             for _, entry in items]),
            "size_on_disk_bytes": _mean([e.size_on_disk_bytes for e, _ in items]),
            "latency_ms_per_example": _mean([e.latency_ms_per_example for e, _ in items]),
            "throughput_examples_per_s": _mean([e.throughput_examples_per_s for e, _ in items]),
            "peak_memory_bytes": _mean([e.peak_memory_bytes for e, _ in items]),
            "ece_before": _mean([c["ece_before"] for c in cals_ok]),
            "ece_after": _mean([c["ece_after"] for c in cals_ok]),
            "temperature": _mean([c["temperature"] for c in cals_ok]),
            "calibration_reason": None if cals_ok else (cal_reasons[0] if cal_reasons
                                                        else "no calibration recorded"),
            "device": device,     # the latency frontier is per device (never CPU with GPU)
            "devices": sorted({str(e.device) for e, _ in items}),
            "reason": None if len(primaries) == 1 else
            f"seeds disagree on the primary metric {sorted(primaries)}",
        })
    # size on disk is the same on any machine: one frontier per task; latency is the
    # machine's: one frontier per task and device
    for cost, key, group in (("size_on_disk_bytes", "pareto_size", lambda r: r["task"]),
                             ("latency_ms_per_example", "pareto_latency",
                              lambda r: (r["task"], r["device"]))):
        by_group: dict[Any, list[dict]] = defaultdict(list)
        for r in rows:
            by_group[group(r)].append(r)
        for group_rows in by_group.values():
            mask = pareto_mask([r[cost] for r in group_rows], [r["metric"] for r in group_rows])
            for r, m in zip(group_rows, mask):
                r[key] = m
    return rows


def device_label(device: str | None) -> str:
    """The device an evaluation's latency was measured on, as its file records it
    (``cpu (<n> threads)`` or ``cuda (<GPU name>)``; older files: ``cpu``)."""
    return str(device) if device else "unknown device"


def skipped_levels(evals: Sequence[Evaluation]) -> list[dict]:
    return [{"model": e.job.model, "experiment": e.job.experiment, "job_id": e.job.job_id,
             "seed": e.job.seed, "level": e.level, "reason": e.reason}
            for e in evals if e.status == "skipped"]


def table(rows: Sequence[dict], skipped: Sequence[dict] = ()) -> str:
    header = ["Task", "Model", "Experiment", "Level", "Metric", "Size (MB)", "Latency (ms/ex)",
              "ECE before", "ECE after", "T", "Frontier"]
    body = []
    for r in rows:
        front = ", ".join(n for n, k in (("size", "pareto_size"),
                                          (f"latency on {r['device']}", "pareto_latency"))
                          if r.get(k)) or "--"
        ece_b = fmt(r["ece_before"], 3)
        ece_a = fmt(r["ece_after"], 3)
        if r["ece_before"] is None:
            ece_b = ece_a = NA
        cell_metric = fmt(r["metric"], 1, 100)
        if r.get("pareto_size") or r.get("pareto_latency"):
            cell_metric = rf"\textbf{{{cell_metric}}}"
        body.append([latex_escape(r["task"]), latex_escape(r["model"]),
                     latex_escape(r["experiment"]), latex_escape(r["level"]), cell_metric,
                     fmt(None if r["size_on_disk_bytes"] is None
                         else r["size_on_disk_bytes"] / 1e6, 1),
                     fmt(r["latency_ms_per_example"], 2), ece_b, ece_a,
                     fmt(r["temperature"], 2), front])
    seen = set()
    for s in skipped:
        key = (s["model"], s["experiment"], s["level"], s["reason"])
        if key in seen:
            continue
        seen.add(key)
        text = latex_escape(f"{s['model']} / {s['experiment']} / {s['level']}: n/a: "
                            f"{s['reason']}")
        # a library's message is long: wrapped within the text width, not beyond the page
        body.append([rf"\parbox[t]{{0.9\linewidth}}{{\raggedright {text}}}"])
    return simple_table(
        header, body, align="llllrrrrrrp{1.9cm}", label="tab:rq3_frontier",
        caption="RQ3: primary metric (points, bold on a frontier) against size on disk and "
                "latency per example, per precision level; ECE (15 bins) before and after "
                "temperature scaling fitted on validation.",
        notes=[("Frontier: not dominated (no other point of the task is at least as accurate "
                "and at most as costly, one strictly) against size and/or latency; latency "
                "frontiers are per device (the one named), never CPU and GPU together.")])


def plot_frontiers(rows: Sequence[dict]) -> dict:
    """Per task: metric vs size (MB) and vs latency (ms/example), frontier joined."""
    plt = pyplot()
    figs = {}
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    markers = dict(zip(LEVELS, "osD^v"))
    for task, trs in sorted(by_task.items()):
        models = sorted({r["model"] for r in trs})
        colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(models)}
        devices = sorted({r["device"] for r in trs})
        fig, axes = plt.subplots(1, 1 + len(devices), figsize=(4.5 * (1 + len(devices)), 3.6))
        panels = [(axes[0], "size_on_disk_bytes", 1e-6, "pareto_size", "size on disk (MB)",
                   trs)]
        panels += [(axes[1 + i], "latency_ms_per_example", 1.0, "pareto_latency",
                    f"latency (ms per example) on {d}", [r for r in trs if r["device"] == d])
                   for i, d in enumerate(devices)]
        for ax, cost, scale, flag, xlabel, panel_rows in panels:
            for r in panel_rows:
                ax.scatter(r[cost] * scale, 100 * r["metric"], color=colors[r["model"]],
                           marker=markers[r["level"]], s=36, zorder=3,
                           edgecolors="black" if r[flag] else "none", linewidths=1.2)
            front = sorted((r[cost] * scale, 100 * r["metric"]) for r in panel_rows if r[flag])
            if len(front) > 1:
                ax.step([x for x, _ in front], [y for _, y in front], where="post",
                        color="grey", lw=1, zorder=2)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{trs[0]['primary_metric']} (points)")
            costs = [r[cost] for r in panel_rows]
            if min(costs) > 0 and max(costs) / min(costs) > 50:  # log only over wide ranges
                ax.set_xscale("log")
        handles = [plt.Line2D([], [], ls="", marker="o", color=colors[m], label=m)
                   for m in models]
        handles += [plt.Line2D([], [], ls="", marker=markers[lv], color="grey", label=lv)
                    for lv in LEVELS if any(r["level"] == lv for r in trs)]
        fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 6),
                   fontsize=8, frameon=False, bbox_to_anchor=(0.5, 1.08))
        fig.suptitle(f"{task}: frontier points ringed", y=-0.02, fontsize=9)
        figs[f"fig_rq3_frontier_{task}"] = fig
    return figs


def pooled_bins(bin_lists: Sequence[Sequence[dict]]) -> list[dict]:
    """Pool reliability bins of several runs: counts summed, means count-weighted."""
    if not bin_lists:
        return []
    n_bins = len(bin_lists[0])
    out = []
    for m in range(n_bins):
        items = [bl[m] for bl in bin_lists if len(bl) == n_bins and bl[m]["count"]]
        count = sum(b["count"] for b in items)
        out.append({"lower": bin_lists[0][m]["lower"], "upper": bin_lists[0][m]["upper"],
                    "count": count,
                    "confidence": sum(b["confidence"] * b["count"] for b in items) / count
                    if count else None,
                    "accuracy": sum(b["accuracy"] * b["count"] for b in items) / count
                    if count else None})
    return out


def reliability(evals: Sequence[Evaluation]) -> dict[tuple, dict]:
    """(task, model, experiment, level) -> pooled bins before/after over seeds."""
    acc: dict[tuple, dict[str, list]] = defaultdict(lambda: {"before": [], "after": []})
    for e in evals:
        if e.status != "ok":
            continue
        for task, entry in e.per_task.items():
            cal = entry.get("calibration")
            if isinstance(cal, dict) and cal.get("bins_before") and cal.get("bins_after"):
                k = (task, e.job.model, e.job.experiment, e.level)
                acc[k]["before"].append(cal["bins_before"])
                acc[k]["after"].append(cal["bins_after"])
    return {k: {"before": pooled_bins(v["before"]), "after": pooled_bins(v["after"])}
            for k, v in acc.items()}


def plot_reliability(diagrams: dict[tuple, dict], max_panels: int = 12) -> dict:
    """Per task: one panel per (model, experiment, level): accuracy per confidence bin."""
    plt = pyplot()
    figs = {}
    tasks = sorted({k[0] for k in diagrams})
    for task in tasks:
        keys = sorted((k for k in diagrams if k[0] == task),
                      key=lambda k: (k[1], k[2], LEVELS.index(k[3])))[:max_panels]
        ncol = min(4, len(keys))
        nrow = math.ceil(len(keys) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3 * ncol, 3 * nrow), squeeze=False)
        for ax, k in zip(axes.ravel(), keys):
            for which, color, off in (("before", "tab:red", -0.25), ("after", "tab:blue", 0.25)):
                bins = diagrams[k][which]
                width = bins[0]["upper"] - bins[0]["lower"]
                xs = [(b["lower"] + b["upper"]) / 2 + off * width for b in bins if b["count"]]
                ys = [b["accuracy"] for b in bins if b["count"]]
                ax.bar(xs, ys, width=width / 2, color=color, alpha=0.7,
                       label="before T" if which == "before" else "after T")
            ax.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_title(f"{k[1]} {k[2]} {k[3]}", fontsize=8)
            ax.set_xlabel("confidence", fontsize=8)
            ax.set_ylabel("accuracy", fontsize=8)
        for ax in axes.ravel()[len(keys):]:
            ax.axis("off")
        axes[0][0].legend(fontsize=7, loc="upper left")
        fig.suptitle(f"{task}: reliability (15 bins)", fontsize=9)
        fig.tight_layout()
        figs[f"fig_rq3_reliability_{task}"] = fig
    return figs


def skipped_lines(skipped: Sequence[dict]) -> list[str]:
    """One line per (model, experiment, level, reason) -- every seed and task of an experiment
    is usually skipped for the same reason -- with the number of jobs it covers."""
    jobs: dict[tuple, int] = {}
    for s in skipped:
        key = (s["model"], s["experiment"], s["level"], " ".join(str(s["reason"]).split()))
        jobs[key] = jobs.get(key, 0) + 1
    return [f"skipped level: {m} {e} {lv} ({n} job{'' if n == 1 else 's'}): {why}"
            for (m, e, lv, why), n in jobs.items()]


def summary_lines(stats_: dict) -> list[str]:
    if stats_["reason"] and not stats_["rows"]:
        return [f"not applicable: {stats_['reason']}"] + skipped_lines(stats_["skipped_levels"])
    lines = []
    for r in stats_["rows"]:
        front = [n for n, k in (("size", "pareto_size"), (f"latency on {r['device']}",
                                                          "pareto_latency")) if r[k]]
        ece = ("ECE n/a: " + str(r["calibration_reason"]) if r["ece_before"] is None else
               f"ECE {fmt(r['ece_before'], 3)} -> {fmt(r['ece_after'], 3)} (T "
               f"{fmt(r['temperature'], 2)})")
        lines.append(f"{r['task']} {r['model']} {r['experiment']} {r['level']} "
                     f"({r['device']}): "
                     f"{r['primary_metric']} {fmt(r['metric'], 1, 100)}, "
                     f"{fmt(r['size_on_disk_bytes'] / 1e6, 1)} MB, "
                     f"{fmt(r['latency_ms_per_example'], 2)} ms/example; {ece}; frontier: "
                     f"{', '.join(front) or 'no'}")
    return lines + skipped_lines(stats_["skipped_levels"])


def section(ctx: Context) -> SectionOutput:
    """RQ3's frontier table, frontier and reliability figures, statistics.json entry and
    SUMMARY.txt block (nothing here is random: no seed)."""
    evals, skipped = load_evaluations(ctx.study.jobs)
    stats_: dict[str, Any] = {"rows": [], "skipped_levels": [], "reliability": [],
                              "skipped": [asdict(s) for s in skipped], "reason": None}
    tables: dict[str, str] = {}
    figs: dict[str, Any] = {}
    if not evals:
        stats_["reason"] = "no evaluation files (<job_dir>/evaluation/<level>.json) found"
    else:
        rows = points(evals)
        stats_["rows"] = rows
        stats_["skipped_levels"] = skipped_levels(evals)
        tables["table_rq3_frontier.tex"] = table(rows, stats_["skipped_levels"])
        if not rows:
            stats_["reason"] = "every evaluated level was skipped"
        else:
            figs.update(plot_frontiers(rows))
            diagrams = reliability(evals)
            stats_["reliability"] = [{"task": k[0], "model": k[1], "experiment": k[2],
                                      "level": k[3], **v} for k, v in sorted(diagrams.items())]
            figs.update(plot_reliability(diagrams))
    return output(tables, figs, {"rq3": stats_},
                  "RQ3: size x precision x performance, with calibration", summary_lines(stats_))
