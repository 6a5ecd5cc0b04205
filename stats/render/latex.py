"""LaTeX: the one escape, the Jinja environment over templates/, footnote letters, and the
context every booktabs template lays out. Cells arrive formatted (stats.render.numbers);
templates only loop over rows (GUIDE principle 10)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from stats.render.numbers import NA, fmt


def _templates_dir() -> Path:
    """templates/ beside stats/ in a clone (or an editable install); else the copy a
    non-editable install ships as the ``stats.templates`` package data."""
    package = Path(__file__).resolve().parents[1]
    beside = package.parent / "templates"
    if (beside / "_booktabs.tex.j2").is_file():
        return beside
    return package / "templates"


TEMPLATES = _templates_dir()

# Plain text -> LaTeX, one character at a time (so a replacement is never escaped again).
# pdflatex's default utf8 input has no glyphs for the Unicode signs: math mode or dashes;
# OT1 text fonts print < > | as other glyphs (¡ ¿ —), hence the \text... commands.
LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
    "−": "$-$", "Δ": r"$\Delta$", "δ": r"$\delta$", "ρ": r"$\rho$", "±": r"$\pm$",
    "×": r"$\times$", "≤": r"$\leq$", "≥": r"$\geq$", "†": r"$^\dagger$", "–": "--",
    "—": "---",
}


def latex_escape(text: Any) -> str:
    """Escape LaTeX's specials (\\ & % $ # _ { } ~ ^ < > |) and the Unicode signs the
    outputs use (− Δ δ ρ ± × ≤ ≥ † – —), in one pass."""
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in str(text))


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


HEADER_WRAP = 12  # a header cell longer than this is set on two lines (at a middle space)


def _header_cell(text: str) -> str:
    """A header cell, escaped; a long one of several words on two lines, so the header does
    not set the width of a table of short numbers."""
    words = str(text).split(" ")
    if len(str(text)) <= HEADER_WRAP or len(words) < 2:
        return latex_escape(text)
    cut = min(range(1, len(words)),
              key=lambda i: abs(len(" ".join(words[:i])) - len(" ".join(words[i:]))))
    top, bottom = (latex_escape(" ".join(w)) for w in (words[:cut], words[cut:]))
    return rf"\begin{{tabular}}[b]{{@{{}}c@{{}}}}{top}\\{{}}{bottom}\end{{tabular}}"  # {} ends \\'s [length]


class PlainFootnotes(Footnotes):
    """:class:`Footnotes` for :func:`simple_table`, whose notes are plain text (escaped
    there): "a: reason"."""

    def notes(self) -> list[str]:
        return [f"{_letter(i)}: {r}" for i, r in enumerate(self.reasons)]


def _letter(i: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26]


def table_context(caption: str, label: str, colspec: str, header: list[str],
                  groups: list[list[list[str]]], notes: list[str], ncols: int,
                  empty_reason: str | None = None) -> dict[str, Any]:
    """What the booktabs template lays out; ``groups`` are row blocks split by \\midrule."""
    groups = [g for g in groups if g]
    if not groups:
        groups = [[[rf"\multicolumn{{{ncols}}}{{l}}{{n/a: {latex_escape(empty_reason or 'no results')}}}"]]]
    return {"caption": caption, "label": label, "colspec": colspec, "header": header,
            "groups": groups, "notes": notes}


def simple_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, caption: str,
                 label: str, align: str | None = None, notes: Sequence[str] = (),
                 size: str = r"\small") -> str:
    """The RQ2-RQ4 tables (templates/table_simple.tex.j2): ``header``, ``caption`` and
    ``notes`` are plain text, escaped here; row cells are already LaTeX. A row of one cell
    spans the whole width (an "n/a: reason" line). ``size``: the font size command."""
    ncol = len(header)
    lines = []
    for row in rows:
        if len(row) == 1:
            lines.append([rf"\multicolumn{{{ncol}}}{{l}}{{{row[0]}}}"])
        elif len(row) != ncol:
            raise ValueError(f"row has {len(row)} cells, header {ncol}")
        else:
            lines.append(list(row))
    if not rows:
        lines.append([rf"\multicolumn{{{ncol}}}{{l}}{{n/a: no rows}}"])
    return render(environment(), "table_simple.tex.j2", caption=latex_escape(caption),
                  label=label, align=align or "l" * ncol,
                  header=[_header_cell(h) for h in header], rows=lines,
                  notes=[latex_escape(n) for n in notes], size=size)


def unit_cell(boot: dict[str, Any] | None, fn: "PlainFootnotes | None" = None) -> str:
    """A test-unit bootstrap in one cell: "[lo, hi], p" in points, or n/a with its reason
    (in ``fn``'s notes where given: the table keeps the page width; the RQ2 and RQ4 tables'
    secondary column)."""
    if not boot:
        return NA
    if boot.get("low") is None:
        if fn is not None:
            return fn.na(str(boot.get("reason")))
        return latex_escape(f"n/a: {boot.get('reason')}")
    return (f"[{fmt(boot['low'], 1, 100, True)}, {fmt(boot['high'], 1, 100, True)}], "
            f"{fmt(boot.get('p_boot'), 3)}")
