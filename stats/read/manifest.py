"""A manifest's ``[stats]`` table: the options of ``python -m stats`` a study fixes in advance.

``stats`` imports no runner, so it reads only this table (tomllib); ``python -m runner``
validates the same keys (:data:`STATS_KEYS`) when it reads the manifest, so a manifest
that plans also reports.

    [stats]
    equivalence_margin = 1.0   # points: RQ5's "data exposure" needs MT − TC within ±this
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import tomllib

from stats.fileio import StatsInputError, read_bounded

MAX_MANIFEST_BYTES = 16 << 20  # the bound runner.study.manifest reads a manifest with

# key -> (what it is, lowest allowed (exclusive), highest allowed (exclusive))
STATS_KEYS: dict[str, tuple[str, float, float]] = {
    "equivalence_margin": ("RQ5's equivalence margin in points", 0.0, 100.0),
}


def stats_problem(table: Any) -> tuple[str | None, str] | None:
    """(key or None, what is wrong) for a bad ``[stats]`` table, else None."""
    if not isinstance(table, dict):
        return None, "expected a table"
    for key, value in table.items():
        if key not in STATS_KEYS:
            return key, f"unknown key; expected one of: {', '.join(sorted(STATS_KEYS))}"
        what, low, high = STATS_KEYS[key]
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or not low < value < high):
            return key, f"expected {what}: a number above {low:g} and below {high:g}, got {value!r}"
    return None


def stats_options(path: Path) -> dict[str, float]:
    """The manifest's ``[stats]`` options ({} without the table); StatsInputError naming the
    file and key when it cannot be read or a value is wrong."""
    try:
        doc = tomllib.loads(read_bounded(path, MAX_MANIFEST_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise StatsInputError(path, "manifest does not exist", where="--manifest") from None
    except (OSError, ValueError) as err:  # FileTooLarge, UnicodeDecodeError, TOMLDecodeError
        raise StatsInputError(path, f"not a readable TOML file ({err})") from None
    table = doc.get("stats", {})
    problem = stats_problem(table)
    if problem is not None:
        key, what = problem
        raise StatsInputError(path, what, where="stats" + (f".{key}" if key else ""))
    return {k: float(v) for k, v in table.items()}
