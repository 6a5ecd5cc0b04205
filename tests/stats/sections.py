"""Run one section of ``python -m stats`` through the writer it ships with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stats.core.study import Options
from stats.report import SECTIONS, build_paper

OWN = ("all_results.csv", "statistics.json", "SUMMARY.txt")


def build(name: str, results: list[str | Path], out: str | Path, **options: Any) -> dict:
    """``stats.report.build_paper`` with only section ``name`` (``options``: Options fields,
    e.g. seed, resamples): the section's statistics.json entry as written, plus "files" (the
    section's tables and figures) and "skipped" (result files, then the section's own)."""
    section = next(s for s in SECTIONS if s.name == name)
    report = build_paper(out, list(results), Options(**options), sections=[section])
    written = json.loads((Path(out) / "statistics.json").read_text())
    entry = written[name]
    entry["files"] = [p for p in report["written"] if Path(p).name not in OWN]
    entry["skipped"] = written["inputs"]["skipped"] + entry.get("skipped", [])
    return entry
