"""The study description: the data (Table: datasets), the systems (Table 1: single-task
baselines; every system's mean in SUMMARY.txt) and the figures over all systems."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mtl_contract.schema import MT, ST
from stats.core.study import Study, seed_list
from stats.questions.context import Context, SectionOutput, SummaryBlock
from stats.render import figures, tables
from stats.render.numbers import interval, num, points, tokens
from stats.render.summary import why


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
            f"mean {points(s['mean'], False)} ± {points(s['sd'], False)} over {len(s['seeds'])} "
            f"seed(s) ({seed_list(s['seeds'])}){why(s['seed_interval'])}; bootstrap 95% CI "
            f"{interval(boot.get('low'), boot.get('high'), False)}"
            f"{why(boot)}; tokens {tokens(s['token_count_mean'])}; efficiency "
            f"{num(s['token_efficiency_mean'], '.4f')}"
            " per million tokens" + "".join(f"; {k} {points(v, False)}" for k, v in
                                             (s.get("secondary") or {}).items()))
    return SectionOutput(
        tables={"table_single_task.tex": tables.single_task_table(ctx.env, ctx.analysis.systems,
                                                                  ctx.source)},
        statistics={"systems": ctx.analysis.systems},
        summary=[SummaryBlock("Systems (mean over seeds of the primary test metric, × 100)",
                              lines or ["no results"])])


def figures_section(ctx: Context) -> SectionOutput:
    return SectionOutput(figures={
        "fig_strategy_bars": figures.strategy_bars(ctx.analysis),
        "fig_validation_curves": figures.validation_curves(ctx.study),
        "fig_transfer_heatmap": figures.transfer_heatmap(ctx.analysis),
        "fig_rq5_transfer": figures.rq5_bars(ctx.analysis),
    })


# ---------------------------------------------------------------- BLURB-comparable
def blurb_metric(primary: str | None, recorded: set[str]) -> str | None:
    """The metric BLURB-era papers report for a task of this primary metric: NER's lenient
    (seqeval default) F1, relation extraction's micro-F1 over the positive classes, else the
    primary metric itself (GAD F1, HoC micro-F1, PubMedQA accuracy, BIOSSES Pearson)."""
    if primary == "f1" and "f1_lenient" in recorded:
        return "f1_lenient"
    if primary == "macro_f1" and "micro_f1" in recorded:
        return "micro_f1"
    return primary


def blurb_rows(study: Study) -> list[dict[str, Any]]:
    """Per model, its single-task system and its multi-task system over the most tasks: per
    task the BLURB-comparable metric's mean over seeds (every seed must record it)."""
    out = []
    for model in study.models():
        systems = [(ST, e) for e in study.experiments(model, ST)]
        mts = study.experiments(model, MT)
        if mts:
            systems.append((MT, max(mts, key=lambda e: (len(study.tasks_of(model, MT, e)), e))))
        for strategy, exp in systems:
            for task in study.tasks_of(model, strategy, exp):
                runs = study.runs(model, strategy, exp, task)
                results = [runs[s].per_task[task] for s in sorted(runs)]
                primary = results[0].primary_metric if results else None
                recorded = set.intersection(*(set(r.metrics) for r in results)) if results \
                    else set()
                metric = blurb_metric(primary, recorded)
                values = [r.metrics.get(metric) for r in results]
                ok_ = bool(values) and all(isinstance(v, (int, float)) for v in values)
                out.append({"model": model, "strategy": strategy, "experiment": exp,
                            "task": task, "metric": metric, "primary_metric": primary,
                            "seeds": sorted(runs),
                            "mean": sum(values) / len(values) if ok_ else None,
                            "reason": None if ok_ else f"{metric} not recorded by every seed"})
    return out


def blurb_section(ctx: Context) -> SectionOutput:
    rows = blurb_rows(ctx.study)
    return SectionOutput(
        tables={"table_blurb.tex": tables.blurb_table(ctx.env, rows, ctx.source)},
        statistics={"blurb": rows})
