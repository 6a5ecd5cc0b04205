"""SUMMARY.txt's shared phrases (effect sizes, seeds, clean units, reasons) and the file
itself through templates/SUMMARY.txt.j2. Numbers come formatted from
:mod:`stats.render.numbers`; each section composes its own lines from these."""

from __future__ import annotations

from typing import Any

import jinja2

from stats.core.power import seeds_needed
from stats.core.significance import effect_band
from stats.core.study import seed_list
from stats.render.numbers import coefficient, num, p_value, points


def metric_range(metric: str | None) -> float:
    """A metric's range in points: correlations run from -100 to 100, the rest 0 to 100."""
    return 200.0 if metric in ("pearson", "spearman") else 100.0


def mde_text(row: dict[str, Any], alpha: float = 0.05) -> str:
    """The row's minimum detectable effect at 80% power, "d_z 1.68 = 2.35 points"; one larger
    than the metric's whole range is no number at all: "not detectable with 2 seeds; >= 31
    seeds needed for 2 points"."""
    mde = row["mde"]
    raw = mde.get("raw")
    if raw is not None and 100 * raw > metric_range(row.get("primary_metric")):
        sd = (row.get("paired_t") or {}).get("sd_diff")
        need = seeds_needed(0.02, sd, mde.get("alpha", alpha)) if sd else None
        return (f"not detectable with {mde['n']} seeds; " + (
            f">= {need} seeds needed for 2 points" if need else "no feasible number of seeds "
            "reaches 2 points"))
    return f"d_z {num(mde['d_z'], '.2f')} = {points(raw, False)} points{why(mde)}"


def level_text(d: dict[str, Any]) -> str:
    """An interval's level as "95%" (the level its dict records); n/a without one."""
    return f"{100 * d['level']:g}%" if d.get("level") else "n/a"


def why(d: dict[str, Any]) -> str:
    return f" ({d['reason']})" if d.get("reason") else ""


def t_text(t: dict[str, Any]) -> str:
    """A t-test result: "t(4) = 2.345, p 0.0789" (n/a parts when there is no test)."""
    return f"t({num(t['df'], 'd')}) = {num(t['t'], '.3f')}, p {p_value(t['p'])}"


def effect_text(dz: dict[str, Any]) -> str:
    if dz["reported"] is None:
        return "d_z n/a"
    name = "Hedges' g (paired)" if dz["corrected"] else "d_z"
    return f"{name} {coefficient(dz['reported'])} ({dz['band']})"


def pooled_text(pd_: dict[str, Any]) -> str:
    """Cohen's d with the pooled SD, uncorrected: the methodology's effect size."""
    if pd_.get("d") is None:
        return f"Cohen's d (pooled SD) n/a{why(pd_)}"
    return f"Cohen's d (pooled SD) {coefficient(pd_['d'])} ({effect_band(pd_['d'])})"


def seeds_text(r: dict[str, Any]) -> str:
    """"seeds 1–5", plus what the row leaves out (part of a comparison uses shared seeds)."""
    text = f"seeds {seed_list(r.get('seeds') or [])}"
    dropped = r.get("seeds_dropped") or {}
    if dropped:
        text += " (left out, not run by every system: " + "; ".join(
            f"{name} seeds {seed_list(s)}" for name, s in sorted(dropped.items())) + ")"
    return text


def dropped_text(clean: dict[str, Any]) -> str:
    """"60 of 300 dropped: they overlap training units of bc2gm, chemprot or jnlpba"."""
    u, tasks = clean["units"], clean["train_tasks"]
    names = tasks[0] if len(tasks) == 1 else f"{', '.join(tasks[:-1])} or {tasks[-1]}"
    return (f"{u['dropped']} of {u['test_units']} dropped: they overlap training units of "
            f"{names}")


def units_text(clean: dict[str, Any]) -> str:
    if not clean.get("units"):
        return "clean units"
    return f"{clean['units']['clean']} clean test units ({dropped_text(clean)})"


# ---------------------------------------------------------------- clean units
def clean_units_text(c: dict[str, Any]) -> str:
    u = c.get("units")
    if not u:
        return "clean units"
    return f"clean units ({dropped_text(c)}; {u['clean']} left)"


def finding_change(full: str | None, now: str | None) -> str:
    return (f"finding: {now or 'no test'} (full test set: {full or 'no test'}"
            f"{'' if now == full else '; CHANGES'})")


DETAIL_WIDTH = 160  # characters per SUMMARY.txt line below the Answers block


def fold(line: str, width: int = DETAIL_WIDTH) -> list[str]:
    """A long line split after its "; " clauses (a clause longer than a line at spaces) into
    lines of at most ``width``; continuation lines are indented four spaces more."""
    if len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip()) + 4)
    room = width - 1  # a line that ends a clause gets its ";" back
    out: list[str] = []
    current = ""
    for clause in line.split("; "):
        piece = clause if not current else f"{current}; {clause}"
        if len(piece) <= room:
            current = piece
            continue
        if current:
            out.append(current + ";")
            clause = indent + clause.lstrip()
        current = clause
        while len(current) > room:
            cut = current.rfind(" ", len(indent) + 1, room + 1)
            cut = cut if cut > len(indent) else room
            out.append(current[:cut])
            current = indent + current[cut:].lstrip()
    out.append(current)
    return out


def summary_text(env: jinja2.Environment, title: str, preamble: list[str],
                 blocks: list[Any], first: list[Any] | None = None) -> str:
    """SUMMARY.txt: the title, the ``first`` blocks (the Answers), the preamble lines, then
    each block's title and lines; a line longer than :data:`DETAIL_WIDTH` is folded."""
    def folded(lines: list[str]) -> list[str]:
        return [part for line in lines for part in fold(line)]

    blocks = [type(b)(b.title, folded(b.lines)) for b in blocks]
    text = env.get_template("SUMMARY.txt.j2").render(title=title, first=first or [],
                                                     preamble=folded(preamble),
                                                     sections=blocks)
    return text if text.endswith("\n") else text + "\n"
