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

This module also holds the small layout helpers rq3 and rq4 share (LaTeX escaping, booktabs
tables, figure saving).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stats import tests
from stats.bootstrap import Block, observed, resample_blocks
from stats.contamination import dropped_text
from stats.fileio import atomic_savefig, atomic_write_text
from stats.load import (
    JobResult,
    PredictionsUnavailable,
    Skipped,
    TaskResult,
    load_results,
    read_predictions,
)
from stats.metrics import metric_names, point_metrics, sufficient_matrix


class Malformed(ValueError):
    """One held-out or evaluation file does not follow its schema (message names the key)."""


HELDOUT_FILE = "heldout.json"
HELDOUT_SCHEMA = "heldout/1"
TRAIN_MODES = ("head", "head_and_adapter")
NA = "n/a"


# ============================================================================================
# Layout helpers shared by rq2, rq3, rq4
# ============================================================================================

_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}", "|": r"\textbar{}", "<": r"\textless{}",
                ">": r"\textgreater{}",
                # pdflatex's default utf8 input has no glyphs for these: math mode instead
                "Δ": r"$\Delta$", "−": "$-$", "ρ": r"$\rho$", "±": r"$\pm$", "×": r"$\times$",
                "≤": r"$\leq$", "≥": r"$\geq$", "–": "--", "—": "---"}
_TEX_RE = re.compile("|".join(re.escape(k) for k in _TEX_SPECIAL))


def latex_escape(text: Any) -> str:
    """Plain text -> LaTeX: escape \\ & % $ # _ { } ~ ^ | < >, and write Δ − ρ ± × ≤ ≥
    in math mode so the table compiles with pdflatex's default input encoding."""
    return _TEX_RE.sub(lambda m: _TEX_SPECIAL[m.group(0)], str(text))


def fmt(x: float | None, digits: int = 1, scale: float = 1.0, sign: bool = False) -> str:
    """A number for a table cell (``scale`` e.g. 100 for points); None/NaN -> "n/a"."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return NA
    return f"{x * scale:+.{digits}f}" if sign else f"{x * scale:.{digits}f}"


def latex_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, caption: str,
                label: str, align: str | None = None, notes: Sequence[str] = ()) -> str:
    """A booktabs table; ``header`` is escaped here, row cells are already LaTeX.

    A row of one cell spans the whole width (used for "n/a: reason" lines).
    """
    ncol = len(header)
    align = align or "l" * ncol
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{latex_escape(caption)}}}", rf"\label{{{label}}}",
             rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    for row in rows:
        if len(row) == 1:
            lines.append(rf"\multicolumn{{{ncol}}}{{l}}{{{row[0]}}} \\")
        else:
            if len(row) != ncol:
                raise ValueError(f"row has {len(row)} cells, header {ncol}")
            lines.append(" & ".join(row) + r" \\")
    if not rows:
        lines.append(rf"\multicolumn{{{ncol}}}{{l}}{{n/a: no rows}} \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    for note in notes:
        lines.append(rf"\par\footnotesize {latex_escape(note)}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display; safe on a headless machine)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_dir: str | Path, stem: str) -> list[str]:
    """Write ``stem.pdf`` and ``stem.png`` atomically, close the figure, return the paths."""
    out = []
    for ext in ("pdf", "png"):
        path = Path(out_dir) / f"{stem}.{ext}"
        atomic_savefig(fig, path, bbox_inches="tight", dpi=150)
        out.append(str(path))
    pyplot().close(fig)
    return out


def write_table(text: str, out_dir: str | Path, name: str) -> str:
    path = Path(out_dir) / name
    atomic_write_text(path, text)
    return str(path)


def write_outputs(outputs: dict, out_dir: str | Path) -> list[str]:
    """Write a :func:`compute` result's tables and figures (PDF + PNG); return the paths."""
    files = [write_table(text, out_dir, name) for name, text in outputs["tables"].items()]
    for stem, fig in outputs["figures"].items():
        files += save_figure(fig, out_dir, stem)
    return files


def to_section_output(outputs: dict):
    """A :func:`compute` result as ``stats.report.SectionOutput`` (imported here: no cycle)."""
    from stats.report import SectionOutput, SummaryBlock

    title, lines = outputs["summary"]
    return SectionOutput(tables=outputs["tables"], figures=outputs["figures"],
                         statistics=outputs["statistics"], summary=[SummaryBlock(title, lines)])


_RAW_CACHE: dict[str, dict] = {}


def raw_result(job: JobResult) -> dict:
    """The job's result.json as parsed JSON (fields the tidy record does not keep)."""
    key = str(job.path)
    if key not in _RAW_CACHE:
        try:
            _RAW_CACHE[key] = json.loads(Path(job.path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            _RAW_CACHE[key] = {}
    return _RAW_CACHE[key]


def trainable_params(job: JobResult) -> int | None:
    mp = raw_result(job).get("model_params")
    v = mp.get("trainable") if isinstance(mp, dict) else None
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def adapter_of(job: JobResult) -> dict | None:
    a = job.config.get("adapter") if isinstance(job.config, dict) else None
    return a if isinstance(a, dict) else None


# ============================================================================================
# Held-out result files
# ============================================================================================

@dataclass(frozen=True)
class HeldoutRun:
    """One held-out evaluation of one source job: a fresh head (and adapter) on ``task``."""

    source: JobResult
    task: str
    seed: int  # seed of the held-out head training
    train_mode: str  # "head" | "head_and_adapter"
    adapter: dict | None
    model_params: dict  # {"total", "trainable"} during held-out training
    budget: dict
    result: TaskResult
    path: Path


def _need(obj: dict, key: str, types, where: str):
    v = obj.get(key)
    if v is None or isinstance(v, bool) or not isinstance(v, types):
        raise Malformed(f"{where}{key}: missing or not {getattr(types, '__name__', types)}")
    return v


def parse_heldout(data: Any, path: Path, source: JobResult) -> HeldoutRun:
    """Validate one heldout.json (schema ``heldout/1``); :class:`Malformed` names the bad key."""
    if not isinstance(data, dict):
        raise Malformed("top level: expected a JSON object")
    if data.get("schema") != HELDOUT_SCHEMA:
        raise Malformed(f"schema: expected {HELDOUT_SCHEMA!r}, got {data.get('schema')!r}")
    if data.get("source_job_id") != source.job_id:
        raise Malformed(f"source_job_id: {data.get('source_job_id')!r} is not the enclosing "
                         f"job {source.job_id!r}")
    task = _need(data, "task", str, "")
    seed = _need(data, "seed", int, "")
    mode = _need(data, "train_mode", str, "")
    if mode not in TRAIN_MODES:
        raise Malformed(f"train_mode: {mode!r} is not one of {TRAIN_MODES}")
    per = _need(data, "per_task", dict, "")
    entry = per.get(task)
    if not isinstance(entry, dict):
        raise Malformed(f"per_task.{task}: missing")
    where = f"per_task.{task}."
    primary = _need(entry, "primary_metric", str, where)
    metrics = _need(entry, "metrics", dict, where)
    clean = {}
    for k, v in metrics.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise Malformed(f"{where}metrics.{k}: not a finite number")
        clean[str(k)] = float(v)
    if primary not in clean:
        raise Malformed(f"{where}metrics: primary metric {primary!r} missing")
    pred = entry.get("predictions")
    result = TaskResult(task=task, primary_metric=primary, metrics=clean,
                        tokens=entry.get("tokens") if isinstance(entry.get("tokens"), int) else None,
                        n_test=entry.get("n_test") if isinstance(entry.get("n_test"), int) else None,
                        stat_spec=entry.get("stat_spec") if isinstance(entry.get("stat_spec"), dict)
                        else None,
                        predictions_path=None if not isinstance(pred, str) else path.parent / pred)
    mp = data.get("model_params") if isinstance(data.get("model_params"), dict) else {}
    return HeldoutRun(source=source, task=task, seed=seed, train_mode=mode,
                      adapter=data.get("adapter") if isinstance(data.get("adapter"), dict) else None,
                      model_params=mp,
                      budget=data.get("budget") if isinstance(data.get("budget"), dict) else {},
                      result=result, path=path)


def load_heldout(jobs: Sequence[JobResult]) -> tuple[list[HeldoutRun], list[Skipped]]:
    """Every ``<job_dir>/heldout/*/seed*/heldout.json`` of the given jobs; bad ones skipped."""
    runs, skipped = [], []
    for job in jobs:
        root = Path(job.path).parent / "heldout"
        if not root.is_dir():
            continue
        for path in sorted(root.glob(f"*/seed*/{HELDOUT_FILE}")):
            try:
                runs.append(parse_heldout(json.loads(path.read_text(encoding="utf-8")), path, job))
            except (OSError, UnicodeDecodeError, ValueError) as err:
                skipped.append(Skipped(str(path), f"malformed held-out result: {err}"))
    return runs, skipped


# ============================================================================================
# The comparison
# ============================================================================================

def _system_key(job: JobResult) -> tuple[str, str, str, str]:
    return (job.model, job.strategy, job.experiment, "+".join(job.tasks))


def _aligned_blocks(results: Sequence[TaskResult],
                   exclude: frozenset[str] = frozenset()) -> list[Block] | str:
    """Blocks on the test units common to all runs (joined on unit_id) less ``exclude``
    (the units a clean-unit analysis leaves out), or a reason."""
    loaded = []
    for tr in results:
        try:
            loaded.append(read_predictions(tr))
        except PredictionsUnavailable as err:
            return f"predictions unavailable: {err}"
    kinds = {k for k, _, _ in loaded}
    if len(kinds) != 1:
        return f"predictions of different stat_spec kinds {sorted(kinds)}"
    metric = results[0].primary_metric
    kind, spec, _ = loaded[0]
    if metric not in metric_names(kind, spec):
        return f"{metric} cannot be recomputed from stat_spec kind {kind!r}"
    common = loaded[0][2].index
    for _, _, frame in loaded[1:]:
        common = common.intersection(frame.index, sort=False)
    if len(common) == 0:
        return "the runs' predictions share no unit_id"
    common = common[~common.isin(exclude)]
    if len(common) == 0:
        return "every test unit the runs share overlaps the training data"
    common = common.sort_values()
    return [Block(k, s, metric, sufficient_matrix(k, s, f.loc[common])) for k, s, f in loaded]


def paired_unit_bootstrap(a: Sequence[TaskResult], b: Sequence[TaskResult], resamples: int,
                          seed: int, level: float = 0.95,
                          exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Paired bootstrap of Δ = mean(metric of a runs) − mean(metric of b runs) over test units.

    Every run of both sides is evaluated on the same resampled units (joined on unit_id,
    less ``exclude``). Percentile CI; two-sided p = min(1, 2 min(P*(Δ* ≤ 0), P*(Δ* ≥ 0))).
    """
    base = {"delta": None, "low": None, "high": None, "p_boot": None, "n_units": None,
            "resamples": resamples, "seed": seed, "level": level}
    if not a or not b:
        return {**base, "reason": "no matched runs"}
    blocks = _aligned_blocks(list(a) + list(b), exclude)
    if isinstance(blocks, str):
        return {**base, "reason": blocks}
    k = len(a)
    obs = observed(blocks)
    delta = float(obs[:k].mean() - obs[k:].mean())
    res = resample_blocks(blocks, resamples, seed)
    dist = res[:, :k].mean(axis=1) - res[:, k:].mean(axis=1)
    dist = dist[np.isfinite(dist)]
    ci = tests.percentile_interval(dist, level)
    if ci is None or not math.isfinite(delta):
        return {**base, "delta": delta if math.isfinite(delta) else None,
                "reason": "metric undefined on every resample"}
    p = min(1.0, 2.0 * min(float((dist <= 0).mean()), float((dist >= 0).mean())))
    return {**base, "delta": delta, "low": ci[0], "high": ci[1], "p_boot": p,
            "n_units": int(blocks[0].x.shape[0]), "reason": None}


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
    :class:`stats.contamination.Contamination`."""
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


def comparisons(jobs: Sequence[JobResult], runs: Sequence[HeldoutRun], *, resamples: int = 10_000,
                rng_seed: int = 0, alpha: float = 0.05, level: float = 0.95,
                contamination=None) -> list[dict]:
    """RQ2 rows: one per (model, MT experiment, ST system, held-out task); Holm per family.
    With a usable ``contamination`` every compared row also gets ``clean``
    (:func:`clean_row`), Holm-adjusted across the family's clean rows."""
    del jobs  # the source jobs come with the runs; kept for a uniform signature
    by_system: dict[tuple, dict[str, dict[tuple[int, int], HeldoutRun]]] = defaultdict(
        lambda: defaultdict(dict))
    for r in runs:
        if adapter_of(r.source) is None:
            continue  # RQ2 compares adapter-trained encoders only
        by_system[_system_key(r.source)][r.task][(r.source.seed, r.seed)] = r
    rows: list[dict] = []
    models = sorted({k[0] for k in by_system})
    for model in models:
        mt_sys = sorted(k for k in by_system if k[0] == model and k[1] == "multi_task")
        st_sys = sorted(k for k in by_system if k[0] == model and k[1] == "single_task")
        if not mt_sys or not st_sys:
            missing = "multi-task" if not mt_sys else "single-task"
            rows.append({"model": model, "mt_experiment": None, "st_system": None,
                         "task": None, "reason": f"no {missing} adapter job has held-out "
                                                 "results", "significant": None})
            continue
        for mt in mt_sys:
            for st in st_sys:
                family = []
                tasks = sorted(set(by_system[mt]) | set(by_system[st]))
                mt_train = _mean_or_none([trainable_params(r.source) for u in
                                          by_system[mt].values() for r in u.values()])
                st_train = _mean_or_none([trainable_params(r.source) for u in
                                          by_system[st].values() for r in u.values()])
                gap = None if mt_train in (None, 0) or st_train is None else \
                    abs(st_train - mt_train) / mt_train
                matched_to = {(adapter_of(r.source) or {}).get("matched_to", {}).get("experiment")
                              for u in by_system[st].values() for r in u.values()
                              if isinstance((adapter_of(r.source) or {}).get("matched_to"), dict)}
                for task in tasks:
                    a_runs, b_runs = by_system[mt].get(task, {}), by_system[st].get(task, {})
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
                        family.append(row)
                        continue
                    ra = [a_runs[k].result for k in keys]
                    rb = [b_runs[k].result for k in keys]
                    va = [r.metrics[r.primary_metric] for r in ra]
                    vb = [r.metrics[r.primary_metric] for r in rb]
                    boot = paired_unit_bootstrap(ra, rb, resamples, rng_seed, level)
                    # the fresh heads must have had the same budget on both sides
                    row["budget_note"] = _budget_note([a_runs[k] for k in keys],
                                                      [b_runs[k] for k in keys])
                    row.update(primary_metric=ra[0].primary_metric,
                               mt_mean=float(np.mean(va)), st_mean=float(np.mean(vb)),
                               mean_diff=float(np.mean(va) - np.mean(vb)),
                               bootstrap=boot, paired_t=tests.paired_t(va, vb),
                               budget=a_runs[keys[0]].budget,
                               train_mode=sorted({a_runs[k].train_mode for k in keys}
                                                 | {b_runs[k].train_mode for k in keys}),
                               reason=boot["reason"])
                    if contamination is not None:
                        row["clean"] = clean_row(row, ra, rb, contamination,
                                                 resamples=resamples, rng_seed=rng_seed,
                                                 level=level)
                    family.append(row)
                _holm(family, alpha)
                _holm([r["clean"] for r in family if "clean" in r], alpha)
                rows.extend(family)
    return rows


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
              r"Δ [95% CI]", "p (Holm)", "Params MT / ST (gap)"]
    body = []
    for r in rows:
        if r.get("task") is None:
            body.append([latex_escape(f"{r['model']}: n/a: {r['reason']}")])
            continue
        boot = r.get("bootstrap") or {}
        mark = r"$^{*}$" if r.get("significant") else ""
        if boot.get("delta") is not None and boot.get("low") is not None:
            diff = (f"{fmt(boot['delta'], 1, 100, True)}{mark} "
                    f"[{fmt(boot['low'], 1, 100, True)}, {fmt(boot['high'], 1, 100, True)}]"
                    + (r"$^{\dagger}$" if r.get("budget_note") else ""))
        else:
            diff = latex_escape(f"n/a: {r.get('reason')}")
        params = NA
        if r.get("mt_trainable") is not None and r.get("st_trainable") is not None:
            params = (f"{r['mt_trainable'] / 1e6:.2f}M / {r['st_trainable'] / 1e6:.2f}M "
                      f"({fmt(r['param_relative_gap'], 1, 100)}\\%)")
        body.append([latex_escape(r["model"]), latex_escape(r["task"]),
                     latex_escape(r["mt_experiment"]),
                     latex_escape(f"{r['st_experiment']}: {r['st_tasks']}"), str(r["n"]),
                     fmt(r.get("mt_mean"), 1, 100), fmt(r.get("st_mean"), 1, 100), diff,
                     fmt(r.get("p_holm"), 3), params])
    return latex_table(
        header, body, align="llllrrrlrl", label="tab:rq2_heldout",
        caption="RQ2: shared-adapter multi-task vs parameter-matched single-task encoders on "
                "held-out tasks (primary metric, points; Δ = MT − ST with paired bootstrap 95% "
                "CI over test units; p Holm-adjusted across held-out tasks; * p < 0.05).",
        notes=["Params: mean trainable parameters of the source jobs and |ST − MT| / MT."]
        + ([("† The fresh heads of the two sides trained on different numbers of examples "
            "(results from before [heldout] batch_size): not a like-for-like comparison.")]
           if any(r.get("budget_note") for r in rows) else []))


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
    u = c["units"]
    full, now = verdict(r), verdict(c)
    return (f"    clean units ({dropped_text(c)}; {u['clean']} left): delta "
            f"{fmt(boot['delta'], 1, 100, True)} points, 95% CI [{fmt(boot['low'], 1, 100, True)}"
            f", {fmt(boot['high'], 1, 100, True)}], Holm p {fmt(c['p_holm'], 3)} -> "
            f"{now or 'no test'} ({'unchanged' if now == full else 'CHANGES'})")


def compute(jobs: Sequence[JobResult], rng_seed: int = 0, *, resamples: int = 10_000,
            alpha: float = 0.05, level: float = 0.95, contamination=None) -> dict:
    """RQ2 without writing: {"tables", "figures", "statistics": {"rq2": ...}, "summary"}.
    ``contamination``: a usable :class:`stats.contamination.Contamination` adds the
    clean-unit results (None: full test sets only)."""
    runs, skipped = load_heldout(jobs)
    stats_ = {"rows": [], "skipped": [asdict(s) for s in skipped], "resamples": resamples,
              "seed": rng_seed, "alpha": alpha, "level": level, "reason": None}
    tables: dict[str, str] = {}
    if not runs:
        stats_["reason"] = "no held-out results (heldout/<task>/seed<k>/heldout.json) found"
    else:
        stats_["rows"] = comparisons(jobs, runs, resamples=resamples, rng_seed=rng_seed,
                                     alpha=alpha, level=level, contamination=contamination)
        tables["table_rq2_heldout.tex"] = table(stats_["rows"])
    return {"tables": tables, "figures": {}, "statistics": {"rq2": stats_},
            "summary": ("RQ2: out-of-distribution transfer with shared adapters",
                        summary_lines(stats_["rows"], stats_["reason"]))}


def section(jobs: Sequence[JobResult], out_dir: str | Path, rng_seed: int = 0, *,
            resamples: int = 10_000, alpha: float = 0.05, level: float = 0.95) -> dict:
    """Compute and write RQ2's outputs; return statistics["rq2"] plus "files"."""
    outputs = compute(jobs, rng_seed, resamples=resamples, alpha=alpha, level=level)
    return {**outputs["statistics"]["rq2"], "rq": "rq2",
            "files": write_outputs(outputs, out_dir)}


def report_section(ctx):
    """``stats.report`` section: ``Section("rq2", ("RQ2",), rq2.report_section)``."""
    opt = ctx.options
    cont = ctx.contamination if ctx.contamination is not None and ctx.contamination.usable \
        else None
    outputs = compute(ctx.study.jobs, opt.seed, resamples=opt.resamples, alpha=opt.alpha,
                      level=opt.level, contamination=cont)
    ctx.shared["rq2_rows"] = outputs["statistics"]["rq2"]["rows"]  # for the contamination section
    return to_section_output(outputs)


def build(results_dirs: Sequence[str | Path], out_dir: str | Path, rng_seed: int = 0,
          **kwargs) -> dict:
    """Load every result below ``results_dirs`` and run :func:`section`."""
    loaded = load_results(list(results_dirs))
    out = section(loaded.jobs, out_dir, rng_seed, **kwargs)
    out["skipped"] = [asdict(s) for s in loaded.skipped] + out["skipped"]
    return out
