"""What every section shares: the context it reads and the output it returns.

``stats.report`` builds one :class:`Context` (the loaded study, the core analysis, options,
the verified contamination file) and runs each :class:`Section` on it; a section returns a
:class:`SectionOutput` and writes nothing -- ``stats.report.build_paper`` writes every file
once all sections have run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jinja2

from stats.core.analysis import Analysis
from stats.core.study import Options, Study
from stats.read.contamination import Contamination


@dataclass
class SummaryBlock:
    title: str
    lines: list[str]


@dataclass
class SectionOutput:
    tables: dict[str, str] = field(default_factory=dict)  # file name -> LaTeX (or CSV text)
    figures: dict[str, Any] = field(default_factory=dict)  # file stem -> matplotlib Figure
    statistics: dict[str, Any] = field(default_factory=dict)  # statistics.json entries
    summary: list[SummaryBlock] = field(default_factory=list)


@dataclass
class Context:
    study: Study
    analysis: Analysis
    env: jinja2.Environment
    options: Options
    source: str  # the results folders, for table headers
    # the contamination file, verified or why not; None: not looked for
    contamination: Contamination | None = None
    shared: dict[str, Any] = field(default_factory=dict)  # what a section leaves for a later one

    def usable_contamination(self) -> Contamination | None:
        """The contamination file when it passed its checks, else None (full test sets)."""
        c = self.contamination
        return c if c is not None and c.usable else None


@dataclass(frozen=True)
class Section:
    name: str
    covers: tuple[str, ...]  # research questions this section reports ("RQ1", ...)
    run: Callable[[Context], SectionOutput]


def output(tables: dict[str, str], figures: dict[str, Any], statistics: dict[str, Any],
           title: str, lines: list[str]) -> SectionOutput:
    """One section's output with a single SUMMARY.txt block (the RQ2-RQ4 sections)."""
    return SectionOutput(tables=tables, figures=figures, statistics=statistics,
                         summary=[SummaryBlock(title, lines)])
