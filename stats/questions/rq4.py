"""RQ4: negative transfer per ordered task pair, and whether task similarity predicts it.

* **Gain** of target task t from partner s (one model, one pairwise multi-task experiment):
  per seed k, ``g_k = primary_t(MT job on {t, s}, seed k) − primary_t(single-task job on t,
  seed k)``; matched on seed.  Reported: mean gain, its t-interval over seeds, the paired
  t-test of mean(g) = 0 (two-sided, scipy ``ttest_rel``), Holm across the ordered pairs of one
  (model, multi-task experiment) family.  **Negative transfer** is flagged where the Holm-adjusted
  p < alpha and the mean gain < 0 (positive transfer likewise with > 0).  One seed or
  zero-variance gains: the test is n/a with the reason (the gain itself is still shown).
  Beside it, for every row with matched runs (one seed is enough): a paired bootstrap over the
  target's *test units* (``stats.core.unit_bootstrap.paired_unit_bootstrap``: every matched run of both sides
  on the same resampled units, joined on unit_id; percentile CI, two-sided p) -- the test-set
  uncertainty of the gain, the only one a single seed can show.  It is reported, not used for
  the flag: the flag needs seeds, because seed-to-seed variation is what decides whether a
  gain is a property of the pair.
  Where several single-task experiments ran t, the one sharing most seeds with the pair job is
  used (noted).
* **Similarity vs gain:** for every measure of ``task_similarity.json`` (runner similarity),
  the points are the ordered pairs (sim(t, s), mean gain(t, s)); Spearman's ρ (ties
  averaged) and an OLS line gain = a + b·sim for the plot.  Its p is a **permutation test
  over task labels**: each task is in many pairs, so the pairs are not
  independent and scipy's p (kept as ``p_pairs``, not printed as the test) is too small.
  The task labels of the similarity matrix are permuted (every permutation when there are
  at most ``resamples`` of them, else ``resamples`` random ones, fixed seed), ρ recomputed
  over the same pairs' gains, and p = share of permutations with |ρ*| ≥ |ρ| (the observed
  labelling counted once).  ``unigram_jsd`` is a divergence: a negative ρ there means "more
  similar, more gain".  Fewer than 3 points or a constant axis: n/a with the reason.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from mtl_contract.schema import MT, SIMILARITY_FILE, ST
from stats.core import significance
from stats.core.unit_bootstrap import paired_unit_bootstrap
from stats.questions.context import Context, SectionOutput, output
from stats.read.results import JobResult
from stats.read.similarity import (
    find_similarity_for_jobs,
    load_similarity,
    similarity_value,
)
from stats.render.figures import pyplot
from stats.render.latex import PlainFootnotes, latex_escape, simple_table, unit_cell
from stats.render.numbers import NA, coefficient, fmt

MEASURE_LABELS = {"label_jaccard": "label-schema Jaccard", "word_jaccard": "word Jaccard",
                  "wordpiece_jaccard": "word-piece Jaccard",
                  "unigram_jsd": "unigram JSD (bits)"}


def _primary(job: JobResult, task: str) -> float:
    tr = job.per_task[task]
    return tr.metrics[tr.primary_metric]


SingleTask = dict[str, dict[int, JobResult]]  # experiment -> seed -> job (one model, one task)


def gains(jobs: Sequence[JobResult], alpha: float = 0.05, level: float = 0.95, *,
          resamples: int = 10_000, rng_seed: int = 0) -> list[dict]:
    """One row per (model, pair experiment, target, partner); Holm per (model, experiment).
    Each row's ``unit_bootstrap`` resamples test units with ``rng_seed`` (the same draws for
    every row, as the other sections do)."""
    st: dict[tuple[str, str], SingleTask] = defaultdict(lambda: defaultdict(dict))
    mt: dict[tuple[str, str, frozenset], dict[int, JobResult]] = defaultdict(dict)
    for job in sorted(jobs, key=lambda j: j.job_id):
        if job.strategy == ST and len(job.tasks) == 1:
            st[(job.model, job.tasks[0])][job.experiment].setdefault(job.seed, job)
        elif job.strategy == MT and len(set(job.tasks)) == 2:
            mt[(job.model, job.experiment, frozenset(job.tasks))].setdefault(job.seed, job)
    families: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for (model, exp, pair), runs in sorted(mt.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                        sorted(kv[0][2]))):
        for target in sorted(pair):
            partner = next(t for t in pair if t != target)
            families[(model, exp)].append(_gain_row(
                model, exp, target, partner, runs, st.get((model, target), {}), level,
                resamples=resamples, rng_seed=rng_seed))
    rows = []
    for fam in families.values():
        _holm(fam, alpha)
        rows.extend(fam)
    return rows


def _gain_row(model: str, exp: str, target: str, partner: str, runs: dict[int, JobResult],
              options: SingleTask, level: float, *, resamples: int, rng_seed: int) -> dict:
    """The gain of ``target`` from ``partner``: the pair job against the single-task
    experiment sharing most seeds with it, matched on seed."""
    row: dict[str, Any] = {"model": model, "mt_experiment": exp, "target": target,
                           "partner": partner, "p_holm": None, "significant": None,
                           "negative_transfer": None, "positive_transfer": None}
    if not options:
        row.update(n=0, seeds=[], gains=[], mean_gain=None, st_experiment=None,
                   paired_t=None, seed_interval=None, unit_bootstrap=None,
                   reason=f"no single-task run of {target} for {model}")
        return row
    st_exp = max(sorted(options), key=lambda e: len(set(options[e]) & set(runs)))
    seeds = sorted(set(options[st_exp]) & set(runs))
    if len(options) > 1:
        row["note"] = (f"single-task experiments {sorted(options)} ran {target}; "
                       f"using {st_exp} ({len(seeds)} matched seeds)")
    mt_vals = [_primary(runs[k], target) for k in seeds]
    st_vals = [_primary(options[st_exp][k], target) for k in seeds]
    g = [a - b for a, b in zip(mt_vals, st_vals)]
    t = significance.paired_t(mt_vals, st_vals)
    row.update(st_experiment=st_exp, n=len(seeds), seeds=seeds,
               primary_metric=runs[seeds[0]].per_task[target].primary_metric
               if seeds else None,
               mt_values=mt_vals, st_values=st_vals, gains=g,
               mean_gain=float(np.mean(g)) if g else None,
               seed_interval=significance.seed_interval(g, level) if g else None,
               paired_t=t,
               unit_bootstrap=paired_unit_bootstrap(
                   [runs[k].per_task[target] for k in seeds],
                   [options[st_exp][k].per_task[target] for k in seeds],
                   resamples, rng_seed, level) if seeds else None,
               reason=t["reason"] if seeds else
               f"no seed shared by {exp} and {st_exp}")
    return row


def _holm(fam: list[dict], alpha: float) -> None:
    """Holm across one (model, experiment) family's seed-level p; flag the transfer."""
    adjusted = significance.holm([(r.get("paired_t") or {}).get("p") for r in fam], alpha)
    for r, p in zip(fam, adjusted):
        r["p_holm"] = p
        r["holm_family_size"] = sum(q is not None for q in adjusted)
        if p is not None:
            r["significant"] = bool(p < alpha)
            r["negative_transfer"] = bool(p < alpha and r["mean_gain"] < 0)
            r["positive_transfer"] = bool(p < alpha and r["mean_gain"] > 0)


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman ρ of each row of x (B, n) with y (n,): Pearson of average ranks."""
    rx = sps.rankdata(x, axis=1)
    rx = rx - rx.mean(axis=1, keepdims=True)
    ry = sps.rankdata(y) - (len(y) + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx @ ry) / np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum())


def permutation_p(pts: Sequence[dict], doc: dict, measure: str, resamples: int,
                  seed: int) -> dict[str, Any]:
    """Permutation test of Spearman ρ over task labels: {"p", "permutations", "exact",
    "reason"} (see the module docstring)."""
    tasks = sorted({p["target"] for p in pts} | {p["partner"] for p in pts})
    k = len(tasks)
    sim = np.full((k, k), np.nan)
    for i, a in enumerate(tasks):
        for j, b in enumerate(tasks):
            v = similarity_value(doc, measure, a, b) if i != j else None
            sim[i, j] = np.nan if v is None else float(v)
    tgt = np.array([tasks.index(p["target"]) for p in pts])
    par = np.array([tasks.index(p["partner"]) for p in pts])
    y = np.array([p["gain"] for p in pts])
    rho = _spearman_rows(sim[tgt, par][None, :], y)[0]
    exact = math.factorial(k) <= resamples
    if exact:
        perms = np.array(list(itertools.permutations(range(k))))
    else:
        rng = np.random.default_rng(seed)
        perms = np.vstack([np.arange(k)] + [rng.permutation(k) for _ in range(resamples)])
    x = sim[perms[:, tgt], perms[:, par]]
    if np.isnan(x).any():
        return {"p": None, "permutations": len(perms), "exact": exact,
                "reason": "the similarity file lacks some pairs of these tasks"}
    null = _spearman_rows(x, y)
    hits = int((np.abs(np.nan_to_num(null)) >= abs(rho) - 1e-12).sum())
    return {"p": hits / len(perms), "permutations": len(perms), "exact": exact, "reason": None}


def similarity_vs_gain(rows: Sequence[dict], doc: dict | None, resamples: int = 10_000,
                       seed: int = 0) -> list[dict]:
    """Spearman ρ, its permutation p over task labels and an OLS line of mean gain on each
    similarity measure, per model."""
    if doc is None:
        return []
    out = []
    for model in sorted({r["model"] for r in rows}):
        for measure in doc["measures"]:
            pts = []
            for r in rows:
                if r["model"] != model or r.get("mean_gain") is None:
                    continue
                x = similarity_value(doc, measure, r["target"], r["partner"])
                if x is not None:
                    pts.append({"target": r["target"], "partner": r["partner"],
                                "mt_experiment": r["mt_experiment"], "similarity": float(x),
                                "gain": float(r["mean_gain"])})
            res: dict[str, Any] = {"model": model, "measure": measure, "n": len(pts),
                                   "points": pts, "rho": None, "p": None, "p_pairs": None,
                                   "permutation": None, "slope": None,
                                   "intercept": None, "reason": None}
            xs = np.array([p["similarity"] for p in pts])
            ys = np.array([p["gain"] for p in pts])
            if len(pts) < 3:
                res["reason"] = f"{len(pts)} ordered pair(s) with a gain and a similarity: " \
                                "Spearman needs at least 3"
            elif np.ptp(xs) == 0 or np.ptp(ys) == 0:
                res["reason"] = "constant " + ("similarity" if np.ptp(xs) == 0 else "gain") + \
                                ": rank correlation undefined"
            else:
                rho, p_pairs = sps.spearmanr(xs, ys)
                slope, intercept = np.polyfit(xs, ys, 1)
                perm = permutation_p(pts, doc, measure, resamples, seed)
                res.update(rho=float(rho), p=perm["p"], p_pairs=float(p_pairs),
                           permutation=perm, slope=float(slope), intercept=float(intercept))
            out.append(res)
    return out


def gain_table(rows: Sequence[dict], doc: dict | None) -> str:
    measures = list(doc["measures"]) if doc else []
    header = ["Model", "Exp.", "Target", "Partner", "n", "Gain [CI]", "p / p (Holm)",
              "Transfer", "Units [95% CI], p"] + [MEASURE_LABELS.get(m, m) for m in measures]
    body = []
    fn = PlainFootnotes()  # "n/a" cells carry a letter; the notes give the reasons
    for r in rows:
        if r.get("mean_gain") is None:
            gain = fn.na(str(r["reason"]))
        else:
            si = r.get("seed_interval") or {}
            ci = (f" [{fmt(si['low'], 1, 100, True)}, {fmt(si['high'], 1, 100, True)}]"
                  if si.get("low") is not None else "")
            gain = fmt(r["mean_gain"], 1, 100, True) + ci
        verdict = ("negative" if r.get("negative_transfer") else
                   "positive" if r.get("positive_transfer") else
                   "n.s." if r.get("significant") is False else NA)
        sims = [fmt(similarity_value(doc, m, r["target"], r["partner"]), 2) for m in measures]
        # the experiment without its task set: Target and Partner name the set
        body.append([latex_escape(r["model"]), latex_escape(r["mt_experiment"].split("[")[0]),
                     latex_escape(r["target"]), latex_escape(r["partner"]), str(r["n"]), gain,
                     _p_pair(r), verdict, unit_cell(r.get("unit_bootstrap"), fn)]
                    + sims)
    return simple_table(
        header, body, align="llllrlrll" + "r" * len(measures), label="tab:rq4_gains",
        caption="RQ4: transfer gain of the target task when trained with the partner "
                "(multi-task minus single-task primary metric, points, mean over seeds with "
                "its paired t-interval at 1 − alpha, which excludes 0 exactly when the "
                "unadjusted p is below alpha); paired t-test over seeds, unadjusted / Holm "
                "across ordered pairs; negative transfer = significantly below zero (n.s.: not "
                "significant).  Units: paired bootstrap over the "
                "target's test units (test-set uncertainty only; not used for the verdict).",
        notes=[("Similarity columns from task_similarity.json; unigram JSD is a divergence "
                "(0 = identical unigram distributions).")]
        + fn.notes(),
        size=r"\scriptsize")


def _p_pair(r: dict) -> str:
    """The unadjusted paired t p over seeds and its Holm-adjusted value: "0.012 / 0.036"."""
    p = (r.get("paired_t") or {}).get("p")
    return NA if p is None else f"{fmt(p, 3)} / {fmt(r.get('p_holm'), 3)}"


def correlation_table(corr: Sequence[dict]) -> str:
    header = ["Model", "Similarity measure", "Pairs", "Spearman rho", "Permutation p",
              "Slope (points per unit)"]
    body = []
    for c in corr:
        if c["rho"] is None:
            body.append([latex_escape(c["model"]),
                         latex_escape(MEASURE_LABELS.get(c["measure"], c["measure"])),
                         str(c["n"]), latex_escape(f"n/a: {c['reason']}"), NA, NA])
        else:
            body.append([latex_escape(c["model"]),
                         latex_escape(MEASURE_LABELS.get(c["measure"], c["measure"])),
                         str(c["n"]), fmt(c["rho"], 2, sign=True), fmt(c["p"], 3),
                         fmt(c["slope"], 1, 100, True)])
    return simple_table(header, body, align="llrrrr", label="tab:rq4_similarity",
                       caption="RQ4: does task similarity predict transfer gain? Spearman "
                               "rank correlation over ordered task pairs; p from a "
                               "permutation test over task labels (each task is in many "
                               "pairs, so the pairs are not independent).")


def _slug(name: str) -> str:
    """A file-name-safe form of a model alias or experiment name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _ordered_tasks(rows: Sequence[dict]) -> list[str]:
    return sorted({r["target"] for r in rows} | {r["partner"] for r in rows})


def plot_gain_matrix(rows: Sequence[dict]) -> dict:
    """Heatmap per (model, experiment): rows target, columns partner, gain in points."""
    plt = pyplot()
    figs = {}
    for model, exp in sorted({(r["model"], r["mt_experiment"]) for r in rows}):
        fam = [r for r in rows if (r["model"], r["mt_experiment"]) == (model, exp)]
        tasks = _ordered_tasks(fam)
        idx = {t: i for i, t in enumerate(tasks)}
        mat = np.full((len(tasks), len(tasks)), np.nan)  # plot-only: blank cells
        for r in fam:
            if r.get("mean_gain") is not None:
                mat[idx[r["target"]], idx[r["partner"]]] = 100 * r["mean_gain"]
        vmax = float(np.nanmax(np.abs(mat))) if np.isfinite(mat).any() else 1.0
        vmax = vmax or 1.0
        size = 1.2 + 0.7 * len(tasks)
        fig, ax = plt.subplots(figsize=(size + 1.2, size), layout="constrained")
        im = ax.imshow(mat, cmap="RdBu", vmin=-vmax, vmax=vmax)
        for r in fam:
            if r.get("mean_gain") is None:
                continue
            mark = "*" if r.get("significant") else ""
            mark += " neg" if r.get("negative_transfer") else ""
            ax.text(idx[r["partner"]], idx[r["target"]], f"{100 * r['mean_gain']:+.1f}{mark}",
                    ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
        ax.set_xlabel("partner task")
        ax.set_ylabel("target task")
        ax.set_title(f"{model} / {exp}\ngain (points); * Holm p<0.05", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
        figs[f"fig_rq4_gain_matrix_{_slug(model)}_{_slug(exp)}"] = fig
    return figs


def plot_similarity(doc: dict) -> dict:
    plt = pyplot()
    measures = list(doc["measures"])
    tasks = doc["tasks"]
    fig, axes = plt.subplots(1, len(measures), figsize=(3.6 * len(measures), 3.6),
                             squeeze=False, layout="constrained")
    for ax, m in zip(axes[0], measures):
        mat = np.array([[np.nan if v is None else v for v in row]
                        for row in doc["measures"][m]], dtype=float)
        im = ax.imshow(mat, cmap="viridis", vmin=0, vmax=1)
        if len(tasks) <= 13:
            for i in range(len(tasks)):
                for j in range(len(tasks)):
                    if np.isfinite(mat[i, j]):
                        ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center",
                                fontsize=6, color="white" if mat[i, j] < 0.5 else "black")
        ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(tasks)), tasks, fontsize=7)
        ax.set_title(MEASURE_LABELS.get(m, m), fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    return {"fig_rq4_similarity": fig}


def plot_scatter(corr: Sequence[dict]) -> dict:
    plt = pyplot()
    figs = {}
    for model in sorted({c["model"] for c in corr}):
        cs = [c for c in corr if c["model"] == model]
        fig, axes = plt.subplots(1, len(cs), figsize=(3.4 * len(cs), 3.2), squeeze=False)
        for ax, c in zip(axes[0], cs):
            xs = [p["similarity"] for p in c["points"]]
            ys = [100 * p["gain"] for p in c["points"]]
            ax.scatter(xs, ys, s=18, color="tab:blue")
            ax.axhline(0, color="grey", lw=0.6)
            if c["rho"] is not None:
                grid = np.linspace(min(xs), max(xs), 20)
                ax.plot(grid, 100 * (c["intercept"] + c["slope"] * grid), color="tab:red", lw=1)
                ax.set_title(f"ρ = {c['rho']:+.2f}, permutation p = {fmt(c['p'], 3)} (n={c['n']})",
                             fontsize=8)
            else:
                ax.set_title(f"n/a: {c['reason']}"[:60], fontsize=7)
            ax.set_xlabel(MEASURE_LABELS.get(c["measure"], c["measure"]), fontsize=8)
            ax.set_ylabel("gain (points)", fontsize=8)
        fig.tight_layout()
        figs[f"fig_rq4_similarity_vs_gain_{_slug(model)}"] = fig
    return figs


def summary_lines(stats_: dict) -> list[str]:
    if stats_["reason"]:
        return [f"not applicable: {stats_['reason']}"]
    lines = []
    for r in stats_["rows"]:
        head = f"{r['model']} {r['mt_experiment']}: {r['target']} with {r['partner']}"
        if r.get("mean_gain") is None:
            lines.append(f"{head}: n/a: {r['reason']}")
            continue
        verdict = ("NEGATIVE TRANSFER" if r.get("negative_transfer") else
                   "positive transfer" if r.get("positive_transfer") else
                   "not significant" if r.get("significant") is False else
                   f"test n/a ({r['reason']})")
        boot = r.get("unit_bootstrap") or {}
        si = r.get("seed_interval") or {}
        seed_ci = (f", seed-level {100 * si['level']:g}% CI [{fmt(si['low'], 1, 100, True)}, "
                   f"{fmt(si['high'], 1, 100, True)}], paired t p "
                   f"{fmt((r.get('paired_t') or {}).get('p'), 3)}"
                   if si.get("low") is not None else "")
        units = (f"; test-unit paired bootstrap {100 * boot.get('level', 0.95):g}% CI "
                 f"[{fmt(boot['low'], 1, 100, True)}, "
                 f"{fmt(boot['high'], 1, 100, True)}], p {fmt(boot['p_boot'], 3)} over "
                 f"{boot['n_units']} units" if boot.get("low") is not None else
                 f"; test-unit bootstrap n/a ({boot['reason']})" if boot.get("reason") else "")
        lines.append(f"{head}: gain {fmt(r['mean_gain'], 1, 100, True)} points over {r['n']} "
                     f"seed(s){seed_ci}, Holm p {fmt(r.get('p_holm'), 3)} -> {verdict}{units}")
    if stats_["similarity_reason"]:
        lines.append(f"similarity vs gain: n/a: {stats_['similarity_reason']}")
    for c in stats_["correlations"]:
        name = MEASURE_LABELS.get(c["measure"], c["measure"])
        if c["rho"] is None:
            lines.append(f"{c['model']} {name} vs gain: n/a: {c['reason']}")
        else:
            perm = c.get("permutation") or {}
            how = (f"all {perm.get('permutations')} permutations" if perm.get("exact")
                   else f"{perm.get('permutations')} random permutations")
            lines.append(f"{c['model']} {name} vs gain: Spearman rho {coefficient(c['rho'])}, "
                         f"permutation p {fmt(c['p'], 3)} (task labels permuted, {how}"
                         + (f"; n/a: {perm['reason']}" if perm.get("reason") else "")
                         + f"; the pairs are not independent: scipy's p "
                         f"{fmt(c['p_pairs'], 3)} treats them as if they were), n {c['n']} "
                         "ordered pairs")
    return lines


def section(ctx: Context) -> SectionOutput:
    """RQ4's tables, figures, statistics.json entry and SUMMARY.txt block.

    The similarity file is ``results/<study>/task_similarity.json`` beside the jobs; a
    malformed one raises :class:`stats.fileio.StatsInputError` (bad input, exit 2). The
    test-unit bootstrap draws with ``--seed`` and ``--resamples``.
    """
    opt = ctx.options
    path = find_similarity_for_jobs(ctx.study.jobs)
    similarity = None if path is None else load_similarity(path)
    rows = gains(ctx.study.jobs, opt.alpha, opt.level, resamples=opt.resamples,
                 rng_seed=opt.seed)
    stats_: dict[str, Any] = {"rows": rows, "correlations": [], "reason": None,
                              "similarity_file": None if path is None else str(path),
                              "similarity_reason": None, "alpha": opt.alpha}
    tables: dict[str, str] = {}
    figs: dict[str, Any] = {}
    if similarity is None:
        stats_["similarity_reason"] = f"no {SIMILARITY_FILE} (python -m runner similarity)"
    else:
        figs.update(plot_similarity(similarity))
    if not rows:
        stats_["reason"] = "no pairwise multi-task job (a multi-task job on exactly 2 tasks)"
    else:
        corr = similarity_vs_gain(rows, similarity, opt.resamples, opt.seed)
        stats_["correlations"] = corr
        tables["table_rq4_gains.tex"] = gain_table(rows, similarity)
        figs.update(plot_gain_matrix(rows))
        if corr:
            tables["table_rq4_similarity_gain.tex"] = correlation_table(corr)
            figs.update(plot_scatter(corr))
    return output(tables, figs, {"rq4": stats_}, "RQ4: negative transfer and task similarity",
                  summary_lines(stats_))
