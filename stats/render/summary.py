"""SUMMARY.txt's shared phrases (effect sizes, seeds, clean units, reasons) and the file
itself through templates/SUMMARY.txt.j2. Numbers come formatted from
:mod:`stats.render.numbers`; each section composes its own lines from these."""

from __future__ import annotations

from typing import Any

import jinja2

from stats.core.analysis import seed_list
from stats.core.tests import effect_band
from stats.render.numbers import coefficient, num, p_value


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


# ---------------------------------------------------------------- clean units (issue 13)
def clean_units_text(c: dict[str, Any]) -> str:
    u = c.get("units")
    if not u:
        return "clean units"
    return f"clean units ({dropped_text(c)}; {u['clean']} left)"


def finding_change(full: str | None, now: str | None) -> str:
    return (f"finding: {now or 'no test'} (full test set: {full or 'no test'}"
            f"{'' if now == full else '; CHANGES'})")


def summary_text(env: jinja2.Environment, title: str, preamble: list[str],
                 blocks: list[Any]) -> str:
    """SUMMARY.txt: the title, the preamble lines, then each block's title and lines."""
    text = env.get_template("SUMMARY.txt.j2").render(title=title, preamble=preamble,
                                                     sections=blocks)
    return text if text.endswith("\n") else text + "\n"
