"""Every LaTeX table cell, computed and formatted here; templates only lay rows out.

Numbers are metric × 100 with one decimal (F1, accuracy, Pearson alike, as BLURB reports).
A value that is not applicable is printed "n/a" with a footnote letter whose note gives
the reason, so a table never shows NaN or an empty cell without an explanation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2


def _templates_dir() -> Path:
    """templates/ beside stats/ in a clone (or an editable install); else the copy a
    non-editable install ships as the ``stats.templates`` package data."""
    beside = Path(__file__).resolve().parent.parent / "templates"
    if (beside / "_booktabs.tex.j2").is_file():
        return beside
    return Path(__file__).resolve().parent / "templates"


TEMPLATES = _templates_dir()
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "−": "--", "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "δ": r"$\delta$",
    "±": r"$\pm$", "†": r"$^\dagger$",
}


def latex_escape(text: Any) -> str:
    """Escape LaTeX's specials (\\ & % $ # _ { } ~ ^) and a few Unicode signs, one pass."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def environment(templates: Path = TEMPLATES) -> jinja2.Environment:
    """Jinja with LaTeX-safe delimiters: \\BLOCK{...}, \\VAR{...}, \\#{...}."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        block_start_string=r"\BLOCK{", block_end_string="}",
        variable_start_string=r"\VAR{", variable_end_string="}",
        comment_start_string=r"\#{", comment_end_string="}",
        line_statement_prefix=None, trim_blocks=True, lstrip_blocks=True,
        autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render(env: jinja2.Environment, template: str, **context: Any) -> str:
    return env.get_template(template).render(**context)


class Footnotes:
    """Letters for "n/a" reasons; the same reason gets the same letter."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, reason: str) -> str:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"$^{{{_letter(self.reasons.index(reason))}}}$"

    def na(self, reason: str) -> str:
        return "n/a" + self.mark(reason)

    def notes(self) -> list[str]:
        return [f"$^{{{_letter(i)}}}$\\,{latex_escape(r)}" for i, r in enumerate(self.reasons)]


def _letter(i: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26]


def ok(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and not math.isfinite(x))


def pts(x: float, signed: bool = False) -> str:
    """Metric × 100, one decimal ("78.1", "+3.0")."""
    v = round(100 * x, 1) + 0.0  # + 0.0 turns a rounded -0.0 into 0.0
    if signed and v != 0:
        return f"{v:+.1f}"
    return f"{v:.1f}"


def fmt_p(p: float) -> str:
    return "$<$0.001" if p < 0.001 else f"{p:.3f}"


def stars(p: float | None, alpha: float) -> str:
    """* p < alpha, ** p < 0.01, *** p < 0.001 (Holm-adjusted p)."""
    if p is None or p >= alpha:
        return ""
    return "$^{***}$" if p < 0.001 else "$^{**}$" if p < 0.01 else "$^{*}$"


def tokens_m(x: float | None) -> str:
    return f"{x / 1e6:.2f}"


def table_context(caption: str, label: str, colspec: str, header: list[str],
                  groups: list[list[list[str]]], notes: list[str], ncols: int,
                  empty_reason: str | None = None) -> dict[str, Any]:
    """What the booktabs template lays out; ``groups`` are row blocks split by \\midrule."""
    groups = [g for g in groups if g]
    if not groups:
        groups = [[[rf"\multicolumn{{{ncols}}}{{l}}{{n/a: {latex_escape(empty_reason or 'no results')}}}"]]]
    return {"caption": caption, "label": label, "colspec": colspec, "header": header,
            "groups": groups, "notes": notes}


def _metric_label(name: str | None) -> str:
    return latex_escape(name or "?")


def single_task_table(env: jinja2.Environment, systems: list[dict[str, Any]],
                      source: str = "results") -> str:
    """Table 1: models × tasks, single-task mean ± sd over seeds (× 100), best mean in bold."""
    fn = Footnotes()
    st = [s for s in systems if s["strategy"] == "single_task"]
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
                                      for t in tasks)]
    rows = []
    for model, exp in rows_keys:
        label = latex_escape(f"{model} ({exp})" if multi_exp else model)
        cells = [label]
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
            cells.append(text)
        rows.append(cells)
    notes = [(r"Mean $\pm$ standard deviation over seeds of the primary test metric "
              r"($\times 100$); best mean per task in bold."), *fn.notes()]
    ctx = table_context(
        r"Single-task baselines: test performance per model and task.", "tab:single_task",
        "l" + "c" * max(len(tasks), 1), header, [rows], notes, len(tasks) + 1,
        "no single-task results")
    return render(env, "table_single_task.tex.j2", placement="t", size=r"\small",
                  source=source, **ctx)


def _delta_ci(row: dict[str, Any], fn: Footnotes, boot_key: str = "paired_bootstrap") -> str:
    """Δ over matched seeds with the paired-bootstrap CI over test units (seed t-interval,
    marked †, when predictions are unavailable)."""
    if not ok(row.get("mean_diff")):
        return fn.na(row.get("reason") or "no matched pair")
    text = pts(row["mean_diff"], signed=True)
    boot = row.get(boot_key) or {}
    if ok(boot.get("low")):
        return f"{text} [{pts(boot['low'], True)}, {pts(boot['high'], True)}]"
    seed_ci = row.get("diff_interval") or {}
    if ok(seed_ci.get("low")):
        return (f"{text} [{pts(seed_ci['low'], True)}, {pts(seed_ci['high'], True)}]"
                + fn.mark("seed-level t-interval; no paired bootstrap: "
                          + str(boot.get("reason"))))
    return text + " [" + fn.na(boot.get("reason") or seed_ci.get("reason") or "no interval") + "]"


def _p_cell(row: dict[str, Any], fn: Footnotes, alpha: float) -> str:
    if ok(row.get("p_holm")):
        return fmt_p(row["p_holm"]) + stars(row["p_holm"], alpha)
    t = row.get("paired_t") or {}
    return fn.na(t.get("reason") or row.get("reason") or "no test")


def _d_cell(row: dict[str, Any], fn: Footnotes) -> str:
    eff = row.get("d_z") or {}
    if ok(eff.get("reported")):
        return f"{eff['reported']:+.2f} ({eff['band']})"
    return fn.na(eff.get("reason") or row.get("reason") or "no effect size")


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
                _delta_ci(r, fn), _p_cell(r, fn, alpha), _d_cell(r, fn), str(r.get("n", 0)),
            ])
        groups.append(rows)
    notes = [
        (r"ST, MT: mean primary test metric ($\times 100$) over the $n$ seeds run by both; "
         r"$\Delta$: mean paired difference MT$-$ST with a 95\% paired-bootstrap interval over "
         r"test examples; $p_\mathrm{Holm}$: two-sided paired $t$-test over seeds, "
         r"Holm-adjusted across the tasks of a model and multi-task experiment ($^{***}$"
         r"$p<0.001$, $^{**}$$p<0.01$, $^{*}$"
         rf"$p<{alpha:g}$); $d$: paired Cohen's $d_z$ (Hedges' $g$ for $n<20$) and its band."),
        *fn.notes()]
    ctx = table_context("Single-task versus multi-task fine-tuning per task (RQ1).",
                        "tab:multitask_comparison", "lllcccccll", [], groups, notes, 10,
                        "no single-task or multi-task results")
    return render(env, "table_multitask_comparison.tex.j2", placement="t", size=r"\scriptsize",
                  source=source, **ctx)


def rq5_table(env: jinja2.Environment, families: list[dict[str, Any]], alpha: float,
              threshold: float, source: str = "results") -> str:
    """Table 3: ST / MT / TC per task, tokens, parity gap, MT − TC with CI, Holm p, verdict."""
    fn = Footnotes()
    groups = []
    for fam in families:
        rows = []
        for r in fam["rows"]:
            st_sys = r.get("single_task") or {}
            st = (pts(st_sys["mean"]) if ok(st_sys.get("mean"))
                  else fn.na("no single-task run of this task"))
            exp = latex_escape(r.get("multi_task_experiment") or "--")
            if not r.get("n"):
                reason = r["reason"]
                mt_sys = r.get("multi_task") or {}
                mt = pts(mt_sys["mean"]) if ok(mt_sys.get("mean")) else fn.na(reason)
                mt_tokens = (tokens_m(mt_sys["token_count_mean"])
                             if ok(mt_sys.get("token_count_mean")) else "--")
                rows.append([latex_escape(r["model"] or "?"), exp, latex_escape(r["task"]), st,
                             mt, fn.na(reason), mt_tokens, "--", "--", "--", "--",
                             latex_escape(r.get("verdict") or "not shown")])
                continue
            ps = r["parity_summary"]
            if ok(ps.get("max_gap")) and ps["holds"] is not None:
                gap = f"{100 * ps['max_gap']:.1f}\\%"
                if not ps["holds"]:
                    gap = r"\textbf{" + gap + "}" + fn.mark(
                        f"token parity violated: gap ≥ {100 * threshold:g}%")
            else:
                gap = fn.na(ps["reason"])
            rows.append([
                latex_escape(r["model"]), exp, latex_escape(r["task"]), st,
                pts(sum(r["values_a"]) / len(r["values_a"])),
                pts(sum(r["values_b"]) / len(r["values_b"])),
                tokens_m(r["mt_tokens_mean"]), tokens_m(r["tc_tokens_mean"]), gap,
                _delta_ci(r, fn), _p_cell(r, fn, alpha), latex_escape(r["verdict"]),
            ])
        groups.append(rows)
    notes = [
        (r"Token-controlled (TC) single-task runs train on as many tokens as their multi-task "
         r"(MT) reference; gap $=|\mathrm{MT}-\mathrm{TC}|/\mathrm{MT}$ in training tokens "
         rf"(largest over seeds; parity when below {100 * threshold:g}\%, same tokenizer only). "
         r"$\Delta$: mean paired MT$-$TC ($\times 100$) with 95\% paired-bootstrap interval; "
         r"$p_\mathrm{Holm}$: paired $t$-test over seeds, Holm-adjusted across tasks. "
         r"Genuine transfer: parity holds and $\Delta>0$ significant; data exposure: parity "
         r"holds, MT beats ST significantly but not TC."),
        *fn.notes()]
    ctx = table_context("Token-controlled transfer analysis (RQ5).", "tab:rq5_token_controlled",
                        "lllccccccccl", [], groups, notes, 12, "no multi-task results")
    return render(env, "table_rq5_token_controlled.tex.j2", placement="t",
                  size=r"\scriptsize", source=source, **ctx)


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
                text = f"{v:,}".replace(",", "{,}")
                if d.get("varies", {}).get(key):
                    text += fn.mark("differs between jobs; the most common value is shown")
                cells.append(text)
        rows.append(cells)
    ctx = table_context("Datasets as used by the jobs.", "tab:dataset_statistics", "lllrrrrr",
                        [], [rows], fn.notes(), 8, "no results")
    return render(env, "table_dataset_statistics.tex.j2", placement="t", size=r"\small",
                  source=source, **ctx)
