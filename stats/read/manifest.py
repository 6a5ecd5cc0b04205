"""A manifest's ``[stats]`` table: the options of ``python -m stats`` a study fixes in advance.

``stats`` imports no runner, so it reads only this table (tomllib); ``python -m runner``
validates the same keys (``mtl_contract.schema.STATS_KEYS``, one check both call) when it
reads the manifest, so a manifest that plans also reports.

    [stats]
    equivalence_margin = 1.0   # points: RQ5's "data exposure" needs MT − TC within ±this
"""

from __future__ import annotations

from pathlib import Path

import tomllib

from mtl_contract.files import read_bounded
from mtl_contract.schema import MAX_MANIFEST_BYTES, stats_problem
from stats.fileio import StatsInputError


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
