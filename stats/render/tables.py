"""The cells of the tables with a template of their own (Table 1-3, datasets, contamination,
clean units): composed here, templates only lay rows out (templates/table_*.tex.j2).

Numbers are metric × 100 with one decimal (F1, accuracy, Pearson alike, as BLURB reports;
:mod:`stats.render.numbers`). A value that is not applicable is printed "n/a" with a
footnote letter whose note gives the reason, so a table never shows NaN or an empty cell
without an explanation. The RQ2-RQ4 tables compose their cells in their question modules
and share one layout (:func:`stats.render.latex.simple_table`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import jinja2

from mtl_contract.schema import ST
from stats.core import controls
from stats.core.significance import (
    EQUIVALENCE_MARGIN,
    INCONCLUSIVE,
    NOT_TESTABLE,
    effect_band,
    verdict_rule,
)
from stats.core.study import seed_list
from stats.render.latex import Footnotes, latex_escape, render, table_context
from stats.render.names import Names
from stats.render.numbers import coefficient, count, ok, p_cell, pts, share, stars


def _metric_label(name: str | None) -> str:
    return latex_escape(name or "?")


def single_task_table(env: jinja2.Environment, systems: list[dict[str, Any]],
                      source: str = "results") -> str:
    """Table 1: tasks (rows) × models (columns), single-task mean ± sd over seeds (× 100), best
    mean per task in bold; a last row gives each column's seeds. Tasks run down the page so
    the methodology's eight tasks and four encoders fit its width."""
    fn = Footnotes()
    st = [s for s in systems if s["strategy"] == ST]
    tasks = sorted({s["task"] for s in st})
    models = sorted({s["model"] for s in st})
    # several single-task experiments of one model: one column each
    cols = sorted({(s["model"], s["experiment"]) for s in st})
    multi_exp = len(cols) > len(models)
    cell = {(s["model"], s["experiment"], s["task"]): s for s in st}
    metric = {t: next(s["primary_metric"] for s in st if s["task"] == t) for t in tasks}
    col_seeds = {c: sorted({x for t in tasks for x in (cell.get((*c, t)) or {}).get("seeds", [])})
                 for c in cols}
    header = ["Task & Metric & " + " & ".join(
        latex_escape(f"{m} ({e})" if multi_exp else m) for m, e in cols)]
    rows = []
    for task in tasks:
        means = [s["mean"] for s in st if s["task"] == task and ok(s["mean"])]
        best = max(means) if means else None
        cells = [latex_escape(task), _metric_label(metric[task])]
        for c in cols:
            s = cell.get((*c, task))
            if s is None or not ok(s["mean"]):
                cells.append(fn.na("not run for this model"))
                continue
            text = pts(s["mean"])
            if best is not None and abs(s["mean"] - best) < 1e-12:
                text = rf"\textbf{{{text}}}"
            if ok(s["sd"]):
                text += rf" $\pm$ {pts(s['sd'])}"
            else:
                text += fn.mark(f"{len(s['seeds'])} seed: no standard deviation")
            if s["seeds"] != col_seeds[c]:
                text += fn.mark(f"over seeds {seed_list(s['seeds'])} only")
            cells.append(text)
        rows.append(cells)
    seeds_row = [["Seeds", ""] + [latex_escape(seed_list(col_seeds[c])) for c in cols]] \
        if rows else []
    notes = [(r"Mean $\pm$ standard deviation over seeds of the primary test metric "
              r"($\times 100$); best mean per task in bold; Seeds: the seeds of the column."),
             *fn.notes()]
    ctx = table_context(
        r"Single-task baselines: test performance per task and model.", "tab:single_task",
        "ll" + "c" * max(len(cols), 1), header, [rows, seeds_row], notes, len(cols) + 2,
        "no single-task results")
    return render(env, "table_single_task.tex.j2", placement="t", size=r"\small",
                  source=source, **ctx)


def _delta_ci(row: dict[str, Any], fn: Footnotes, boot_key: str = "paired_bootstrap") -> str:
    """Δ over matched seeds with its seed-level paired t-interval (the interval of the
    printed paired-t p: it excludes 0 exactly when p < 1 − level). Without one (a
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


def _pooled_cell(row: dict[str, Any], fn: Footnotes, band: bool = True) -> str:
    """Cohen's d with the pooled SD, uncorrected (the methodology's, criterion d > 0.3),
    with its band unless ``band`` is false."""
    eff = row.get("pooled_d") or {}
    if ok(eff.get("d")):
        return coefficient(eff["d"]) + (f" ({effect_band(eff['d'])})" if band else "")
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


def _names(families: list[dict[str, Any]]) -> Names:
    """Short names for the families' system labels (the set of every task -> "[all N]")."""
    labels = [f.get(k) for f in families for k in ("multi_task_experiment",
                                                    "token_controlled_experiment")]
    return Names(labels, {r["task"] for f in families for r in f["rows"]})


def _key_note(names: Names) -> list[str]:
    """A table note spelling out the shortened system names it used."""
    key = names.key(used_only=True)
    text = latex_escape("Names: " + "; ".join(f"{a} = {b}" for a, b in key) + ".")
    return [text.replace("+", r"+\allowbreak{}")] if key else []  # a set breaks at its "+"


def _label(base: str, i: int) -> str:
    """The i-th float of a table split into several: base, base-2, base-3, ..."""
    return base if i == 0 else f"{base}-{i + 1}"


def _by_size(families: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Families with the largest multi-task set first (the all-8 set), then by name."""
    return sorted(families, key=lambda f: (f.get("multi_task_experiment") is None,
                                           -len(f["rows"]), str(f.get("multi_task_experiment")),
                                           str(f.get("token_controlled_experiment"))))


def multitask_table(env: jinja2.Environment, families: list[dict[str, Any]], alpha: float,
                    source: str = "results") -> str:
    """Table 2: per task, ST vs MT means over matched seeds, Δ with CI, Holm p, d_z, n; one
    float per model, one block per multi-task set (named once, in its heading; the largest
    set first)."""
    names = _names(families)
    models = sorted({f["model"] for f in families})
    floats = []
    for i, model in enumerate(models or [None]):
        fn = Footnotes()
        groups = []
        for fam in _by_size([f for f in families if f["model"] == model]):
            exp = fam["multi_task_experiment"]
            title = (f"{names(exp)} vs {fam['single_task_experiment'] or 'no single-task run'}"
                     if exp else "tasks without a multi-task run")
            rows = [[rf"\multicolumn{{9}}{{l}}{{\textit{{{latex_escape(title)}}}}}"]]
            for r in fam["rows"]:
                st, mt = (r["values_b"], r["values_a"]) if r.get("n") else (None, None)
                rows.append([
                    latex_escape(r["task"]), _metric_label(r.get("primary_metric")),
                    _mean_cell(st, fn, r["reason"] or "no single-task run"),
                    _mean_cell(mt, fn, r["reason"] or "no multi-task run"),
                    _delta_ci(r, fn), _p_cell(r, fn, alpha), _pooled_cell(r, fn, band=False),
                    _d_cell(r, fn), _seeds_cell(r, fn),
                ])
            groups.append(rows)
        notes = [
            (r"ST, MT: mean primary test metric ($\times 100$) over the $n$ seeds run by both; "
             rf"$\Delta$: mean paired difference MT$-$ST with its {100 * (1 - alpha):g}\% "
             r"paired $t$-interval over seeds (it excludes 0 exactly when the unadjusted "
             rf"$p<{alpha:g}$; the test-set resampling interval is in SUMMARY.txt); $p$ / "
             r"$p_\mathrm{Holm}$: two-sided paired $t$-test over seeds, unadjusted / "
             r"Holm-adjusted across the tasks of a model and multi-task experiment ($^{***}$"
             r"$p<0.001$, $^{**}$$p<0.01$, $^{*}$"
             rf"$p<{alpha:g}$); $d$: Cohen's $d$ with the pooled standard deviation of the two "
             r"systems' seed scores (the methodology's effect size, uncorrected); $d_z$: paired "
             r"mean difference over the standard deviation of the differences, Hedges-corrected "
             r"($g_z$) for $n<20$, with its band ($|d|<0.5$ small, $<0.8$ medium, else large). "
             r"Seeds: the seeds both systems ran ($n$)."),
            *_key_note(names), *fn.notes()] if i == 0 else [*_key_note(names), *fn.notes()]
        caption = "Single-task versus multi-task fine-tuning per task (RQ1)" + (
            f": {latex_escape(model)}." if model and len(models) > 1 else ".")
        ctx = table_context(caption, _label("tab:multitask_comparison", i), "llccccccl", [],
                            groups, notes, 9, "no single-task or multi-task results")
        floats.append(render(env, "table_multitask_comparison.tex.j2", placement="t",
                             size=r"\scriptsize", source=source,
                             level=f"{100 * (1 - alpha):g}", **ctx))
    return "\n".join(floats)


def _rq5_family_title(fam: dict[str, Any], names: Names | None = None) -> str:
    """One comparison: multi-task system vs token-controlled system, parity target, seeds
    (the model and the parity mode are the float's)."""
    names = names or Names([], [])
    if fam["model"] is None:
        return "token-controlled jobs without a usable multi-task reference"
    e_t = fam.get("token_controlled_experiment")
    if e_t is None:
        return f"{names(fam['multi_task_experiment'])} (no token-controlled system)"
    target = fam.get("parity_target") or "not recorded"
    seeds = _family_seeds(fam)
    # the token-controlled system trains the multi-task system's set: its experiment says it
    return (f"{names(fam['multi_task_experiment'])} vs {e_t.split('[')[0]}: target {target}, TC at "
            "final weights" + (f", seeds {seed_list(seeds)}" if seeds else ""))


def _family_seeds(fam: dict[str, Any]) -> list[int]:
    """The seeds most of the family's compared rows use (shown once, in its heading)."""
    counts = Counter(tuple(r.get("seeds") or []) for r in fam["rows"] if "parity_summary" in r)
    return list(counts.most_common(1)[0][0]) if counts else []


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


def _seeds_mark(r: dict[str, Any], seeds: list[int], fn: Footnotes) -> str:
    """A mark on a Table 3 row whose seeds differ from its heading's, or that leaves out
    seeds some system ran (the note names them)."""
    mine = r.get("seeds") or []
    text = "" if not mine or mine == seeds else fn.mark(
        f"over seeds {seed_list(mine)} ({len(mine)}) only")
    dropped = r.get("seeds_dropped") or {}
    if dropped:
        text += fn.mark("only the seeds every system of the row ran; left out: " + "; ".join(
            f"{name} seeds {seed_list(s)}" for name, s in sorted(dropped.items())))
    return text


def _rq5_na_cells(r: dict[str, Any], st: str, fn: Footnotes) -> list[str]:
    reason = r["reason"]
    mt = pts(r["mt_mean"]) if ok(r.get("mt_mean")) else fn.na(reason)
    return [st, mt, fn.na(reason), "--", "--", "--", "--",
            latex_escape(r.get("verdict") or NOT_TESTABLE)]


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
    return [st, pts(r["mt_mean"]), pts(r["tc_mean"]),
            _gap_cell(r["parity_summary"], fn, threshold), _delta_ci(r, fn),
            _p_cell(r, fn, alpha), _pooled_cell(r, fn, band=False), verdict]


RQ5_COLUMNS = 9


def _rq5_floats(families: list[dict[str, Any]]) -> list[tuple[str, str | None, list]]:
    """Table 3's floats: one per parity mode and model, (mode, model, families) with the
    largest multi-task set first; multi-task systems without a token-controlled partner and
    orphaned token-controlled jobs after them."""
    keyed: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for fam in families:
        mode = fam.get("parity_mode") if fam.get("token_controlled_experiment") else None
        keyed.setdefault((mode or "", fam["model"]), []).append(fam)
    order = sorted(keyed, key=lambda k: (k[0] == "", k[1] is None, k[0], str(k[1])))
    return [(mode, model, _by_size(keyed[(mode, model)])) for mode, model in order]


# what each parity mode's table is about (Table 3 is total parity; per-task parity has its
# own table, caption and label)
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


# the paper's note on the text-matched control: one paragraph a reviewer can check
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
    """Table 3 (``mode`` "total") or the per-task parity table (its own caption and
    label, never pooled with total parity): per comparison (MT system vs one token-controlled
    system) and task: ST / MT / TC over the seeds all three ran, parity gap, MT − TC with its
    seed-level CI, p and Holm p, Cohen's d, verdict; one float per model, one block per
    multi-task set (the all-8 set first). Training tokens, d_z and each row's seeds are in
    SUMMARY.txt and statistics.json. ``control`` "text": the text-matched control's own
    table (the two controls are never pooled)."""
    names = _names(families)
    floats = []
    split = _rq5_floats(families)
    text = control == controls.TEXT
    title, base, _, lead = RQ5_TABLES[mode]
    if text:
        title = "Text-matched control (RQ5): cross-task supervision vs text exposure."
        base = "tab:rq5_text_controlled"
    rule = verdict_rule(alpha, threshold, margin)
    if text:
        rule = controls.rule_text(control, rule)
    level = f"{100 * (1 - alpha):g}"
    for i, (fmode, model, fams) in enumerate(split or [("", None, [])]):
        fn = Footnotes()
        groups = []
        for fam in fams:
            seeds = _family_seeds(fam)
            heading = latex_escape(_rq5_family_title(fam, names))
            rows = [[rf"\multicolumn{{{RQ5_COLUMNS}}}{{l}}{{\textit{{{heading}}}}}"]]
            for r in fam["rows"]:
                st = (pts(r["st_mean"]) if ok(r.get("st_mean"))
                      else fn.na((r.get("mt_minus_st") or {}).get("reason")
                                 or "no single-task run of this task sharing a seed"))
                cells = (_rq5_cells(r, st, fn, alpha, threshold) if "parity_summary" in r
                         else _rq5_na_cells(r, st, fn))
                rows.append([latex_escape(r["task"]) + _seeds_mark(r, seeds, fn)] + cells)
            groups.append(rows)
        notes = [
            (lead + r"gap $=|\mathrm{MT}-\mathrm{TC}|/\mathrm{MT}$ in training tokens "
             rf"(largest over seeds; parity when below {100 * threshold:g}\%, same tokenizer "
             r"only). ST, MT, TC: mean over the seeds all three systems ran (the block's "
             rf"heading). $\Delta$: mean paired MT$-$TC ($\times 100$) with its {level}\% "
             r"paired $t$-interval over seeds; $p$ / $p_\mathrm{Holm}$: paired $t$-test over "
             r"seeds, unadjusted / Holm-adjusted across the tasks of one comparison; $d$: "
             r"Cohen's $d$ (pooled SD, the methodology's; success criterion $d>0.3$). Training "
             r"tokens, the paired $d_z$ and the minimum detectable effect: SUMMARY.txt and "
             r"statistics.json."),
            latex_escape(rule)] if i == 0 else []
        if text and i == 0:
            notes.insert(0, TEXT_CONTROL_NOTE)
        notes += [*_key_note(names), *fn.notes()]
        where = ", ".join(x for x in (model and latex_escape(model),
                                      fmode and f"parity {latex_escape(fmode)}") if x)
        caption = title.rstrip(".") + (f": {where}." if where else ".")
        # the verdict wraps: per-task and text-control words run long ("gain beyond
        # same-task exposure")
        ctx = table_context(caption, _label(base, i), "l" + "c" * 7 + "p{2.1cm}", [], groups,
                            notes, RQ5_COLUMNS, "no multi-task results" if mode == "total"
                            else "no token-controlled system with per-task parity")
        floats.append(render(env, "table_rq5_token_controlled.tex.j2", placement="t",
                             size=r"\scriptsize", source=source, level=level, **ctx))
    return "\n".join(floats)


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
    """Train/test overlap: per test task, each training task whose training units
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
    """Every RQ1 / RQ5 / RQ2 comparison on the full test set and on its clean units (the
    test units no training text overlaps). ``entries``: {"rq", "model", "comparison", "task", "full", "clean", "findings",
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


def blurb_table(env: jinja2.Environment, rows: list[dict[str, Any]],
                source: str = "results") -> str:
    """The BLURB-comparable metrics (stats.questions.study.blurb_rows): tasks down the page,
    per model its single-task and its largest multi-task system, mean over seeds (× 100)."""
    fn = Footnotes()
    cols = list(dict.fromkeys((r["model"], r["strategy"], r["experiment"]) for r in rows))
    tasks = sorted({r["task"] for r in rows})
    cell = {(r["model"], r["strategy"], r["experiment"], r["task"]): r for r in rows}
    models = list(dict.fromkeys(c[0] for c in cols))
    names = Names([c[2] for c in cols], tasks)
    spans = " & ".join(rf"\multicolumn{{{sum(c[0] == m for c in cols)}}}{{c}}{{{latex_escape(m)}}}"
                       for m in models)
    header = [f"& & {spans}",
              "Task & Metric & " + " & ".join("ST" if s == ST else "MT" for _, s, _ in cols)]
    systems = "; ".join(f"{'ST' if s == ST else 'MT'} = {', '.join(sorted({names(c[2]) for c in cols if c[1] == s}))}"
                        for s in dict.fromkeys(c[1] for c in cols))
    body = []
    for task in tasks:
        metric = next(r["metric"] for r in rows if r["task"] == task)
        cells = [latex_escape(task), _metric_label(metric)]
        for c in cols:
            r = cell.get((*c, task))
            if r is None:
                cells.append("--")
            elif r["mean"] is None:
                cells.append(fn.na(r["reason"]))
            else:
                cells.append(pts(r["mean"]) + (fn.mark(f"{metric}: not every column's metric")
                                               if r["metric"] != metric else ""))
        body.append(cells)
    notes = [(r"Mean over seeds ($\times 100$) of the metric BLURB-era papers report: NER "
              r"lenient F1 (seqeval's default, conlleval chunking), relation extraction "
              r"micro-F1 over the positive classes, otherwise the primary metric; ST: the "
              r"single-task system, MT: the model's multi-task system over the most tasks. "
              r"For comparison with published numbers only; the tests use the primary metric. "
              + latex_escape(f"Systems: {systems}.")),
             *_key_note(names), *fn.notes()]
    ctx = table_context("BLURB-comparable test metrics.", "tab:blurb",
                        "ll" + "c" * max(len(cols), 1), header, [body], notes,
                        len(cols) + 2, "no results")
    return render(env, "table_single_task.tex.j2", placement="t", size=r"\scriptsize",
                  source=source, **ctx)
