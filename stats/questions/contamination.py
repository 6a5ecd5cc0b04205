"""Contamination (train/test overlap between tasks): the overlap table and figure, the clean-unit table, and in
SUMMARY.txt the largest overlaps, what pretraining contamination leaves open, and every
comparison whose finding changes on the clean units (the clean-unit results themselves are
computed by :mod:`stats.core.clean_units` and RQ2, and printed under each RQ's rows)."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

from stats.questions import rq2
from stats.questions.context import Context, SectionOutput, SummaryBlock
from stats.read.contamination import (
    Contamination,
    all_pairs,
    largest,
    load_contamination,
    overlap_rows,
    study_tasks,
)
from stats.render import figures, tables
from stats.render.numbers import p_value, percent, points
from stats.render.summary import units_text

RULE = ("clean test units: those that overlap (exact or n-gram) no training unit of any task "
        "the multi-task job trained on (RQ1, RQ5) -- the evaluated task itself included, "
        "because a test unit that is also in its own task's training data inflates both "
        "systems, and only units neither system saw in training measure transfer -- or, for "
        "RQ2, of any task either source job trained on plus the held-out task (its fresh "
        "head trains on it); both systems of a comparison are scored on the same clean units "
        "so they stay paired")

PRETRAINING = ("Pretraining contamination is not measured: that needs the encoders' "
               "pretraining corpora. PubMedBERT and BioBERT were pretrained on PubMed text, "
               "and every one of these corpora was drawn from PubMed, so their test sentences "
               "may have been seen in pretraining; the clean-unit results do not control for "
               "that.")

# --------------------------------------------------------------------- what changes
FINDING_TEXT = {
    "MT better": "multi-task is significantly better than single-task",
    "ST better": "single-task is significantly better than multi-task",
    "no significant difference": "there is no significant difference",
}


def finding(row: dict[str, Any], delta_key: str = "mean_diff") -> str | None:
    """Significance in words: MT better / ST better / no significant difference; None when
    there is no test (one seed, no predictions)."""
    if row.get("p_holm") is None or row.get(delta_key) is None:
        return None
    if row.get("significant"):
        return "MT better" if row[delta_key] > 0 else "ST better"
    return "no significant difference"


NO_FINDING = ("no significant difference", "inconclusive", "no multi-task gain", "not testable")


def change_sentence(rq: str, title: str, row: dict[str, Any], full: str | None,
                    clean: str | None, numbers: tuple[str, str]) -> str | None:
    """The plain-words sentence for a comparison whose finding (RQ1, RQ2: significance;
    RQ5: the verdict) differs on the clean units; None when it does not, or when the full
    test set has no finding to compare."""
    if full is None or full == clean:
        return None
    c = row["clean"]

    def words(f: str | None) -> str:
        if f is None:
            return f"no test is possible ({c.get('reason')})"
        return f"the verdict is {f!r}" if rq == "RQ5" else FINDING_TEXT[f]

    end = ("The clean units show a result the full test set does not." if full in NO_FINDING
           else "The full-test result does not hold once the test units seen in training "
                "are left out.")
    return (f"{rq} {title}, {row['task']}: on the full test set {words(full)} ({numbers[0]}), "
            f"but on the {units_text(c)} {words(clean)} ({numbers[1]}). {end}")


def _clean_entries(ctx: Context, rq2_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every comparison with a clean-unit result: what table_clean_units shows, and the
    plain-words sentence where the finding changes."""
    entries = []

    def add(rq, model, comparison, row, findings, boot_key, numbers):
        entries.append({"rq": rq, "model": model, "comparison": comparison,
                        "task": row["task"], "full": row, "clean": row["clean"],
                        "findings": findings, "boot_key": boot_key,
                        "sentence": change_sentence(rq, f"{model} {comparison}", row,
                                                           *findings, numbers)})

    def mt_st(r):
        return f"MT − ST {points(r.get('mean_diff'))} points, Holm p {p_value(r.get('p_holm'))}"

    for f in ctx.analysis.multitask:
        for r in (r for r in f["rows"] if "clean" in r):
            add("RQ1", f["model"], f"{f['multi_task_experiment']} vs "
                f"{f['single_task_experiment']}", r, (finding(r),
                                                      finding(r["clean"])),
                "paired_bootstrap", (mt_st(r), mt_st(r["clean"])))
    for f in ctx.analysis.rq5:
        for r in (r for r in f["rows"] if "clean" in r):
            def numbers(x):
                return (f"MT − TC {points(x.get('mean_diff'))} points, Holm p "
                        f"{p_value(x.get('p_holm'))}; {mt_st(x.get('mt_minus_st') or {})}")
            add("RQ5", f["model"], f"{f['multi_task_experiment']} vs "
                f"{f['token_controlled_experiment']}", r,
                (r["verdict"], r["clean"].get("verdict")), "paired_bootstrap",
                (numbers(r), numbers(r["clean"])))
    for r in (r for r in rq2_rows if "clean" in r):
        add("RQ2", r["model"], f"{r['mt_experiment']} vs {r['st_experiment']} ({r['st_tasks']})",
            r, (rq2.verdict(r), rq2.verdict(r["clean"])), "bootstrap",
            (mt_st(r), mt_st(r["clean"])))
    return entries


def _overlap_lines(cont: Contamination, rows: list[dict[str, Any]],
                   evaluated: list[str]) -> list[str]:
    """The largest overlaps on the study's test sets, in words."""
    n = cont.doc["n"]
    top = largest(rows)
    lines = [f"largest overlaps of the study's test sets with its training data (exact, or a "
             f"shared run of {n} words):" if top else
             "no test unit of the study's tasks overlaps their training data"]
    for r in top:
        whose = "its own" if r["train_task"] == r["test_task"] else f"{r['train_task']}'s"
        lines.append(f"  {r['test_task']}: {r['any']} of its {r['units']} test units "
                     f"({percent(r['share'])}) overlap {whose} training data ({r['exact']} "
                     f"exact duplicates, {r['ngram']} by {n}-gram)")
    pairs = sum(1 for r in rows if r["train_task"] is not None and r["any"])
    lines.append(f"(test task, training task) pairs with any overlap: {pairs}; the full list: "
                 "table_contamination.tex, contamination.csv (every task of the file, "
                 "validation splits too)")
    missing = sorted(set(evaluated) - set(cont.doc["tasks"]))
    if missing:
        lines.append(f"tasks of the study not in the contamination file (no clean-unit results "
                     f"for their comparisons): {', '.join(missing)}")
    return lines


def _contamination_lines(ctx: Context, cont: Contamination, rows: list[dict[str, Any]],
                         evaluated: list[str], entries: list[dict[str, Any]],
                         changes: list[str]) -> list[str]:
    """SUMMARY.txt's contamination block."""
    lines = [cont.describe()] + ([cont.tie_line()] if cont.tie_line() else [])
    if not cont.usable:
        return lines + [("clean-unit results: not computed; every result above is on the "
                         "full test sets"), PRETRAINING]
    lines += [f"rule: {RULE}"] + _overlap_lines(cont, rows, evaluated)
    decon = sum(1 for j in ctx.study.jobs if j.config.get("decontaminate"))
    if decon:
        lines.append(f"{decon} job(s) trained with decontaminate = true (their training data "
                     "already left out units overlapping evaluated units); the clean-unit "
                     "filter applies to every job alike")
    counts = Counter(e["rq"] for e in entries)
    lines.append("clean-unit results: " + (", ".join(
        f"{counts[q]} {q} comparison(s)" for q in ("RQ1", "RQ5", "RQ2") if counts[q])
        or "no comparison to recompute") + " (under each row in its section; "
        "table_clean_units.tex)")
    if changes:
        lines += ["findings that change on the clean units:"] + [f"  {t}" for t in changes]
    elif entries:
        lines.append("no comparison's finding changes on the clean units")
    return lines + [PRETRAINING]


def section(ctx: Context) -> SectionOutput:
    """Contamination: the overlap table and figure, the clean-unit table, and in SUMMARY.txt the
    largest overlaps, what pretraining contamination leaves open, and every comparison whose
    finding changes on the clean units (the per-row results sit under each RQ's rows)."""
    cont = ctx.contamination or load_contamination(None, [])
    rq2_rows = ctx.shared.get("rq2_rows") or []
    evaluated, trained = study_tasks(
        ctx.study.jobs, [r["task"] for r in rq2_rows if r.get("task")])
    rows = (overlap_rows(cont.doc, evaluated or None, trained or None)
            if cont.usable else [])
    entries = _clean_entries(ctx, rq2_rows)
    changes = [e["sentence"] for e in entries if e["sentence"]]
    lines = _contamination_lines(ctx, cont, rows, evaluated, entries, changes)
    reason = None if cont.usable else cont.describe()
    # an empty table's row is short (it does not wrap); the whole reason goes in a note
    short = None if cont.usable else f"contamination {cont.status}; see the note"
    n = cont.doc["n"] if cont.usable else None
    return SectionOutput(
        tables={"table_contamination.tex": tables.contamination_table(
                    ctx.env, rows, n, short or "no task of the study is in the file",
                    ctx.source, reason),
                "table_clean_units.tex": tables.clean_units_table(
                    ctx.env, entries, ctx.options.alpha,
                    short or "no comparison to recompute", ctx.source, reason),
                "contamination.csv": _csv(all_pairs(cont.doc) if cont.usable else [])},
        figures={"fig_contamination": figures.contamination_heatmap(rows, n, reason)},
        statistics={"contamination": {
            "status": cont.status, "path": cont.path, "reason": cont.reason,
            "checked": cont.checked, "n": n, "rule": RULE if cont.usable else None,
            "overlap": rows, "changes": changes, "pretraining": PRETRAINING,
            "clean_comparisons": len(entries)}},
        summary=[SummaryBlock("Contamination (RQ1): train/test overlap and clean test units",
                              lines)])


CSV_COLUMNS = ("test_task", "split", "train_task", "units", "exact", "ngram", "any", "share")


def _csv(rows: list[dict[str, Any]]) -> str:
    import pandas as pd

    buf = io.StringIO()
    pd.DataFrame(rows, columns=list(CSV_COLUMNS)).to_csv(buf, index=False)
    return buf.getvalue()
