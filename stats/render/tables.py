"""The cells of the tables with a template of their own (Table 1-3, datasets, contamination,
clean units): composed here, templates only lay rows out (templates/table_*.tex.j2).

Numbers are metric × 100 with one decimal (F1, accuracy, Pearson alike, as BLURB reports;
:mod:`stats.render.numbers`). A value that is not applicable is printed "n/a" with a
footnote letter whose note gives the reason, so a table never shows NaN or an empty cell
without an explanation. The RQ2-RQ4 tables compose their cells in their question modules
and share one layout (:func:`stats.render.latex.simple_table`).
"""

from __future__ import annotations

from typing import Any

import jinja2

from stats.core import controls
from stats.core.analysis import seed_list
from stats.core.tests import (
    EQUIVALENCE_MARGIN,
    INCONCLUSIVE,
    NOT_TESTABLE,
    effect_band,
    verdict_rule,
)
from stats.read.results import ST
from stats.render.latex import Footnotes, latex_escape, render, table_context
from stats.render.numbers import coefficient, count, millions, ok, p_cell, pts, share, stars


def _metric_label(name: str | None) -> str:
    return latex_escape(name or "?")


def single_task_table(env: jinja2.Environment, systems: list[dict[str, Any]],
                      source: str = "results") -> str:
    """Table 1: models × tasks, single-task mean ± sd over seeds (× 100), best mean in bold."""
    fn = Footnotes()
    st = [s for s in systems if s["strategy"] == ST]
    tasks = sorted({s["task"] for s in st})
    models = sorted({s["model"] for s in st})
    # several single-task experiments of one model: one row each
    rows_keys = sorted({(s["model"], s["experiment"]) for s in st})
    multi_exp = len(rows_keys) > len(models)
    cell = {(s["model"], s["experiment"], s["task"]): s for s in st}
    best = {}
    for task in tasks:
        means = [s["mean"] for s in st if s["task"] == task and ok(s["mean"])]
        best[task] = max(means) if means else None
    metric = {t: next(s["primary_metric"] for s in st if s["task"] == t) for t in tasks}
    header = ["Model & " + " & ".join(f"{latex_escape(t)} ({_metric_label(metric[t])})"
                                      for t in tasks) + " & Seeds"]
    rows = []
    for model, exp in rows_keys:
        label = latex_escape(f"{model} ({exp})" if multi_exp else model)
        cells = [label]
        row_seeds = sorted({x for t in tasks for x in (cell.get((model, exp, t)) or {})
                            .get("seeds", [])})
        for task in tasks:
            s = cell.get((model, exp, task))
            if s is None or not ok(s["mean"]):
                cells.append(fn.na("not run for this model"))
                continue
            text = pts(s["mean"])
            if best[task] is not None and abs(s["mean"] - best[task]) < 1e-12:
                text = rf"\textbf{{{text}}}"
            if ok(s["sd"]):
                text += rf" $\pm$ {pts(s['sd'])}"
            else:
                text += fn.mark(f"{len(s['seeds'])} seed: no standard deviation")
            if s["seeds"] != row_seeds:
                text += fn.mark(f"over seeds {seed_list(s['seeds'])} only")
            cells.append(text)
        rows.append(cells + [latex_escape(seed_list(row_seeds))])
    notes = [(r"Mean $\pm$ standard deviation over seeds of the primary test metric "
              r"($\times 100$); best mean per task in bold; Seeds: the seeds of the row."),
             *fn.notes()]
    ctx = table_context(
        r"Single-task baselines: test performance per model and task.", "tab:single_task",
        "l" + "c" * max(len(tasks), 1) + "l", header, [rows], notes, len(tasks) + 2,
        "no single-task results")
    return render(env, "table_single_task.tex.j2", placement="t", size=r"\small",
                  source=source, **ctx)


def _delta_ci(row: dict[str, Any], fn: Footnotes, boot_key: str = "paired_bootstrap") -> str:
    """Δ over matched seeds with its seed-level paired t-interval (the interval of the
    printed paired-t p: it excludes 0 exactly when p < 1 − level, issue 24). Without one (a
    single seed) the test-set resampling interval is shown, labelled as such."""
    if not ok(row.get("mean_diff")):
        return fn.na(row.get("reason") or "no matched pair")
    text = pts(row["mean_diff"], signed=True)
    seed_ci = row.get("diff_interval") or {}
    if ok(seed_ci.get("low")):
        return f"{text} [{pts(seed_ci['low'], True)}, {pts(seed_ci['high'], True)}]"
    boot = row.get(boot_key) or {}
    if ok(boot.get("low")):
        return (f"{text} [{pts(boot['low'], True)}, {pts(boot['high'], True)}]"
                + fn.mark("test-set resampling interval (paired bootstrap over test "
                          "examples), not a seed-level one: "
                          + str(seed_ci.get("reason") or "no seed-level interval")))
    return text + " [" + fn.na(boot.get("reason") or seed_ci.get("reason") or "no interval") + "]"


def _p_cell(row: dict[str, Any], fn: Footnotes, alpha: float) -> str:
    """The paired t p over seeds, unadjusted (the one the interval agrees with), then
    Holm-adjusted with its stars: "0.012 / 0.036*"."""
    t = row.get("paired_t") or {}
    if ok(row.get("p_holm")) and ok(t.get("p")):
        return f"{p_cell(t['p'])} / {p_cell(row['p_holm'])}{stars(row['p_holm'], alpha)}"
    return fn.na(t.get("reason") or row.get("reason") or "no test")


def _d_cell(row: dict[str, Any], fn: Footnotes) -> str:
    """Paired d_z (Hedges' g_z for n < 20) and its band."""
    eff = row.get("d_z") or {}
    if ok(eff.get("reported")):
        return f"{coefficient(eff['reported'])} ({eff['band']})"
    return fn.na(eff.get("reason") or row.get("reason") or "no effect size")


def _pooled_cell(row: dict[str, Any], fn: Footnotes) -> str:
    """Cohen's d with the pooled SD, uncorrected (the methodology's, criterion d > 0.3)."""
    eff = row.get("pooled_d") or {}
    if ok(eff.get("d")):
        return f"{coefficient(eff['d'])} ({effect_band(eff['d'])})"
    return fn.na(eff.get("reason") or row.get("reason") or "no effect size")


def _seeds_cell(row: dict[str, Any], fn: Footnotes) -> str:
    """The seeds a row uses, "(n)", marked when some system ran seeds the row leaves out."""
    seeds = row.get("seeds") or []
    text = latex_escape(f"{seed_list(seeds)} ({len(seeds)})") if seeds else "--"
    dropped = row.get("seeds_dropped") or {}
    if dropped:
        text += fn.mark("only the seeds every system of the row ran; left out: " + "; ".join(
            f"{name} seeds {seed_list(s)}" for name, s in sorted(dropped.items())))
    return text


def _mean_cell(values: list[float] | None, fn: Footnotes, reason: str) -> str:
    if not values:
        return fn.na(reason)
    return pts(sum(values) / len(values))


def multitask_table(env: jinja2.Environment, families: list[dict[str, Any]], alpha: float,
                    source: str = "results") -> str:
    """Table 2: per task, ST vs MT means over matched seeds, Δ with CI, Holm p, d_z, n."""
    fn = Footnotes()
    groups = []
    for fam in families:
        rows = []
        for r in fam["rows"]:
            exp = fam["multi_task_experiment"]
            metric = r.get("primary_metric")
            st, mt = (r["values_b"], r["values_a"]) if r.get("n") else (None, None)
            rows.append([
                latex_escape(r["model"]), latex_escape(exp) if exp else "--",
                latex_escape(r["task"]), _metric_label(metric),
                _mean_cell(st, fn, r["reason"] or "no single-task run"),
                _mean_cell(mt, fn, r["reason"] or "no multi-task run"),
                _delta_ci(r, fn), _p_cell(r, fn, alpha), _pooled_cell(r, fn), _d_cell(r, fn),
                _seeds_cell(r, fn),
            ])
        groups.append(rows)
    notes = [
        (r"ST, MT: mean primary test metric ($\times 100$) over the $n$ seeds run by both; "
         rf"$\Delta$: mean paired difference MT$-$ST with its {100 * (1 - alpha):g}\% paired $t$-interval over "
         rf"seeds (it excludes 0 exactly when the unadjusted $p<{alpha:g}$; the test-set resampling "
         r"interval is in SUMMARY.txt); $p$ / $p_\mathrm{Holm}$: two-sided paired $t$-test over "
         r"seeds, unadjusted / Holm-adjusted across the tasks of a model and multi-task "
         r"experiment ($^{***}$"
         r"$p<0.001$, $^{**}$$p<0.01$, $^{*}$"
         rf"$p<{alpha:g}$); $d$: Cohen's $d$ with the pooled standard deviation of the two "
         r"systems' seed scores (the methodology's effect size, uncorrected); $d_z$: paired "
         r"mean difference over the standard deviation of the differences, Hedges-corrected "
         r"($g_z$) for $n<20$; bands $|d|<0.5$ small, $<0.8$ medium, else large. Seeds: the "
         r"seeds both systems ran ($n$)."),
        *fn.notes()]
    ctx = table_context("Single-task versus multi-task fine-tuning per task (RQ1).",
                        "tab:multitask_comparison", "lllccccccll", [], groups, notes, 11,
                        "no single-task or multi-task results")
    return render(env, "table_multitask_comparison.tex.j2", placement="t", size=r"\scriptsize",
                  source=source, level=f"{100 * (1 - alpha):g}", **ctx)


def _rq5_family_title(fam: dict[str, Any]) -> str:
    """One comparison: model, multi-task system vs token-controlled system, parity."""
    if fam["model"] is None:
        return "token-controlled jobs without a usable multi-task reference"
    e_t = fam.get("token_controlled_experiment")
    if e_t is None:
        return f"{fam['model']}: {fam['multi_task_experiment']} (no token-controlled system)"
    target = fam.get("parity_target") or "not recorded"
    return (f"{fam['model']}: {fam['multi_task_experiment']} vs {e_t} (parity "
            f"{fam.get('parity_mode')}, target {target}; TC at final weights)")


def _gap_cell(ps: dict[str, Any], fn: Footnotes, threshold: float) -> str:
    if ps.get("not_reached"):
        gap = share(ps["max_gap"]) if ok(ps.get("max_gap")) else "n/a"
        return r"\textbf{" + gap + "}" + fn.mark(ps["not_reached"])
    if ok(ps.get("max_gap")) and ps["holds"] is not None:
        gap = share(ps["max_gap"])
        if not ps["holds"]:
            gap = r"\textbf{" + gap + "}" + fn.mark(
                f"token parity violated: gap ≥ {100 * threshold:g}%")
        return gap
    return fn.na(ps["reason"])


def _rq5_na_cells(r: dict[str, Any], st: str, fn: Footnotes) -> list[str]:
    reason = r["reason"]
    mt = pts(r["mt_mean"]) if ok(r.get("mt_mean")) else fn.na(reason)
    mt_sys = r.get("multi_task") or {}
    mt_tokens = (millions(mt_sys["token_count_mean"])
                 if ok(mt_sys.get("token_count_mean")) else "--")
    return [st, mt, fn.na(reason), mt_tokens, "--", "--", "--", "--", "--", "--",
            _seeds_cell(r, fn), latex_escape(r.get("verdict") or NOT_TESTABLE)]


def _rq5_cells(r: dict[str, Any], st: str, fn: Footnotes, alpha: float,
               threshold: float) -> list[str]:
    verdict = latex_escape(r["verdict"])
    eq = r.get("equivalence") or {}
    if r["verdict"] == INCONCLUSIVE and ok(eq.get("low")):
        verdict += fn.mark(
            f"MT − TC {100 * eq['level']:g}% seed-level interval [{100 * eq['low']:+.1f}, "
            f"{100 * eq['high']:+.1f}] points, not inside ±{100 * eq['margin']:g}; "
            + (f"about {eq['seeds_needed']} seeds would decide it at the observed mean and sd"
               if eq.get("seeds_needed") else "more seeds than are practical would be needed"))
    if (r.get("sensitivity") or {}).get("changes"):
        verdict += fn.mark("the verdict changes with the token-controlled side at its best-"
                           "validation weights or under the other parity target (SUMMARY.txt, "
                           "sensitivity line)")
    return [st, pts(r["mt_mean"]), pts(r["tc_mean"]), millions(r["mt_tokens_mean"]),
            millions(r["tc_tokens_mean"]), _gap_cell(r["parity_summary"], fn, threshold),
            _delta_ci(r, fn), _p_cell(r, fn, alpha), _pooled_cell(r, fn), _d_cell(r, fn),
            _seeds_cell(r, fn), verdict]


# what each parity mode's table is about (Table 3 is total parity; per-task parity has its
# own table, caption and label, issue 24)
RQ5_TABLES = {
    "total": (("Token-controlled transfer analysis (RQ5): total parity, the token-controlled "
              "single-task job trained on as many tokens as the whole multi-task job."),
              "tab:rq5_token_controlled", "MT (M)",
              (r"Token-controlled (TC) single-task runs train on as many tokens as their "
              r"whole multi-task (MT) reference (total parity); ")),
    "per_task": (("Per-task token parity (RQ5, a different question): the token-controlled "
                 "job trained only on the tokens the multi-task job spent on that task; a gain "
                 "here is a gain beyond more of the task's own data, not evidence against "
                 "data exposure."),
                 "tab:rq5_per_task_parity", "MT on task (M)",
                 (r"Per-task parity: TC runs train on as many tokens as their multi-task (MT) "
                 r"reference spent on that task alone, MT's token column and token efficiency "
                 r"count those tokens too; ")),
}


def rq5_modes(families: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The RQ5 families by parity mode: per-task parity apart, everything else (total
    parity, multi-task systems without a token-controlled system, orphans) in Table 3."""
    out: dict[str, list[dict[str, Any]]] = {"total": [], "per_task": []}
    for fam in families:
        out["per_task" if fam.get("parity_mode") == "per_task" else "total"].append(fam)
    return out


# the paper's note on the text-matched control (issue 26): one paragraph a reviewer can check
TEXT_CONTROL_NOTE = (
    r"Text-matched control: TC fine-tunes on the task alone, but replays its MT job's batches "
    r"(same sampler, seed, batch plans, learning-rate schedule and subsets): the task's own "
    r"batches train its head, every other task's batch is fed to the same encoder as "
    r"unlabelled text with BERT's masked-LM objective (15\% of real tokens; the checkpoint's "
    r"MLM head, else one initialised as BERT's, decoder tied to the input embeddings). It sees "
    r"each task's real tokens exactly as often as MT (parity by construction), without the "
    r"other tasks' labels: MT above it is cross-task supervision, MT not above it is text "
    r"exposure.")


def rq5_table(env: jinja2.Environment, families: list[dict[str, Any]], alpha: float,
              threshold: float, source: str = "results", margin: float = EQUIVALENCE_MARGIN,
              mode: str = "total", control: str = "repeat") -> str:
    """Table 3 (``mode`` "total") or the per-task parity table: per comparison (MT system vs
    one token-controlled system) and task: ST / MT / TC over the seeds all three ran, tokens,
    parity gap, MT − TC with its seed-level CI, p and Holm p, effect sizes, seeds, verdict.
    ``control`` "text": the text-matched control's own table (issue 26; the two controls
    are never pooled)."""
    caption, label, mt_tokens_label, lead = RQ5_TABLES[mode]
    fn = Footnotes()
    groups = []
    for fam in families:
        rows = [[rf"\multicolumn{{15}}{{l}}{{\textit{{{latex_escape(_rq5_family_title(fam))}}}}}"]]
        for r in fam["rows"]:
            st = (pts(r["st_mean"]) if ok(r.get("st_mean"))
                  else fn.na((r.get("mt_minus_st") or {}).get("reason")
                             or "no single-task run of this task sharing a seed"))
            head = [latex_escape(r["model"] or "?"),
                    latex_escape(r.get("multi_task_experiment") or "--"), latex_escape(r["task"])]
            cells = (_rq5_cells(r, st, fn, alpha, threshold) if "parity_summary" in r
                     else _rq5_na_cells(r, st, fn))
            rows.append(head + cells)
        groups.append(rows)
    notes = [
        (lead + r"gap $=|\mathrm{MT}-\mathrm{TC}|/\mathrm{MT}$ in training tokens "
         rf"(largest over seeds; parity when below {100 * threshold:g}\%, same tokenizer only). "
         r"ST, MT, TC: mean over the seeds all three systems ran. "
         rf"$\Delta$: mean paired MT$-$TC ($\times 100$) with its {100 * (1 - alpha):g}\% paired $t$-interval "
         r"over seeds; $p$ / $p_\mathrm{Holm}$: paired $t$-test over seeds, unadjusted / "
         r"Holm-adjusted across the tasks of one comparison; $d$: Cohen's $d$ (pooled SD, the "
         r"methodology's; success criterion $d>0.3$); $d_z$: paired, Hedges-corrected for "
         r"$n<20$."),
        latex_escape(verdict_rule(alpha, threshold, margin)),
        *fn.notes()]
    if control == controls.TEXT:
        notes[1] = latex_escape(controls.rule_text(control, verdict_rule(alpha, threshold,
                                                                         margin)))
        notes.insert(0, TEXT_CONTROL_NOTE)
        caption = ("Text-matched control (RQ5): cross-task supervision vs text exposure.")
        label = "tab:rq5_text_controlled"
    ctx = table_context(caption, label, "lll" + "c" * 11 + "l", [], groups, notes, 15,
                        "no multi-task results" if mode == "total"
                        else "no token-controlled system with per-task parity")
    return render(env, "table_rq5_token_controlled.tex.j2", placement="t",
                  size=r"\scriptsize", source=source, mt_tokens_label=mt_tokens_label,
                  level=f"{100 * (1 - alpha):g}", **ctx)


def dataset_table(env: jinja2.Environment, datasets: list[dict[str, Any]],
                  source: str = "results") -> str:
    """Dataset statistics as the jobs recorded them; * marks values that differ between jobs
    (e.g. a demo cap on examples), in which case the most common value is shown."""
    fn = Footnotes()
    rows = []
    for d in datasets:
        cells = [latex_escape(d["task"]), latex_escape(d["kind"] or "?"),
                 _metric_label(d["primary_metric"])]
        for key in ("train_samples", "val_samples", "test_samples", "num_labels", "n_test"):
            v = d.get(key)
            if v is None:
                cells.append(fn.na(f"{key} not recorded"))
            else:
                text = count(v)
                if d.get("varies", {}).get(key):
                    text += fn.mark("differs between jobs; the most common value is shown")
                cells.append(text)
        rows.append(cells)
    ctx = table_context("Datasets as used by the jobs.", "tab:dataset_statistics", "lllrrrrr",
                        [], [rows], fn.notes(), 8, "no results")
    return render(env, "table_dataset_statistics.tex.j2", placement="t", size=r"\small",
                  source=source, **ctx)


def contamination_table(env: jinja2.Environment, rows: list[dict[str, Any]], n: int | None,
                        empty_reason: str | None, source: str = "results",
                        why: str | None = None) -> str:
    """Train/test overlap (issue 13): per test task, each training task whose training units
    its test units overlap (exact, n-gram, either, share of the test units), then the units
    overlapping any of the study's training tasks. ``rows``: stats.read.contamination.overlap_rows;
    ``why``: a long reason for an empty table, as a (wrapping) note."""
    groups = []
    for task in dict.fromkeys(r["test_task"] for r in rows):
        mine = [r for r in rows if r["test_task"] == task]
        pairs = sorted((r for r in mine if r["train_task"] is not None and r["any"]),
                       key=lambda r: (-r["any"], r["train_task"]))
        union = next(r for r in mine if r["train_task"] is None)
        cells = [[latex_escape(r["train_task"] + (" (itself)" if r["train_task"] == task else "")),
                  count(r["exact"]), count(r["ngram"]), count(r["any"]), share(r["share"])]
                 for r in pairs]
        cells.append([r"\textit{any of the study's training tasks}", "--", "--",
                      count(union["any"]), share(union["share"])])
        groups.append([[latex_escape(task) if i == 0 else "", count(union["units"]) if i == 0
                        else "", *c] for i, c in enumerate(cells)])
    notes = [(rf"Test units of each task that overlap training units of a training task: "
              rf"exact, the same normalised text; {n}-gram, a shared run of {n} words (a short "
              rf"unit counts only by exact match); overlapping, either; share of the task's "
              rf"test units. Training tasks without overlap are left out. From "
              rf"\texttt{{python -m runner contamination}}.")] if n else []
    notes += [latex_escape(why)] if why else []
    ctx = table_context("Train/test overlap between the study's tasks (contamination).",
                        "tab:contamination", "lrlrrrr", [], groups, notes, 7, empty_reason)
    return render(env, "table_contamination.tex.j2", placement="t", size=r"\small",
                  source=source, n=n or "n", **ctx)


def _finding_cell(full: str | None, clean: str | None) -> str:
    text = f"{full or 'no test'} → {clean or 'no test'}"
    return latex_escape(text).replace("→", r"$\rightarrow$") + (
        r" \textbf{(changes)}" if full is not None and full != clean else "")


def clean_units_table(env: jinja2.Environment, entries: list[dict[str, Any]], alpha: float,
                      empty_reason: str | None, source: str = "results",
                      why: str | None = None) -> str:
    """Every RQ1 / RQ5 / RQ2 comparison on the full test set and on its clean units (issue
    13). ``entries``: {"rq", "model", "comparison", "task", "full", "clean", "findings",
    "boot_key"}, built by stats.report."""
    fn = Footnotes()
    groups: dict[str, list[list[str]]] = {}
    for e in entries:
        full, clean = e["full"], e["clean"]
        units = clean.get("units")
        dropped = (f"{count(units['dropped'])}/{count(units['test_units'])}" if units
                   else fn.na(clean.get("reason") or "no clean units"))
        if clean.get("n"):
            clean_cells = [_delta_ci(clean, fn, e["boot_key"]), _p_cell(clean, fn, alpha)]
        else:
            clean_cells = [fn.na(clean.get("reason") or "no clean-unit comparison"), "--"]
        groups.setdefault(e["rq"], []).append([
            e["rq"], latex_escape(e["model"]), latex_escape(e["comparison"]),
            latex_escape(e["task"]), dropped, _delta_ci(full, fn, e["boot_key"]),
            _p_cell(full, fn, alpha), *clean_cells, _finding_cell(*e["findings"])])
    notes = [(r"Each comparison recomputed on its clean test units: those that overlap (exact "
              r"or $n$-gram) no training unit of any task the multi-task job (RQ2: either "
              r"source job, and the held-out task) trained on, the evaluated task included; "
              r"both systems on the same units. Dropped: test units left out, of those "
              r"scored. $\Delta$: MT$-$ST (RQ1, RQ2) or MT$-$TC (RQ5) with its "
              rf"{100 * (1 - alpha):g}\% paired $t$-interval over seeds; $p$ / "
              r"$p_\mathrm{Holm}$: unadjusted / Holm-adjusted, as in the RQ's own table. "
              r"Finding: significance (RQ1, RQ2) or the verdict (RQ5)."), *fn.notes()]
    notes += [latex_escape(why)] if why else []
    ctx = table_context("Every comparison on the full test set and on its clean test units.",
                        "tab:clean_units", "lllllccccl", [], list(groups.values()), notes, 10,
                        empty_reason)
    return render(env, "table_clean_units.tex.j2", placement="t", size=r"\scriptsize",
                  source=source, level=f"{100 * (1 - alpha):g}", **ctx)
