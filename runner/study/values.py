"""The manifest's value checks: each turns one TOML value into the checked Python value or
raises :class:`Bad` with what was expected; the parser (runner.study.parser) adds the file,
line and key path.  No torch, no I/O."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any


class Bad(Exception):
    """A value check failed; the caller turns it into an InputError with file and line."""


def known_tasks() -> tuple[str, ...]:
    """Task names from the registry (runner.data.tasks.TASKS: one file per task)."""
    from runner.data.tasks import TASKS

    return tuple(TASKS)


def did_you_mean(word: str, options) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``options``, or nothing."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_int(v: Any) -> bool:
    """An integer, and not a bool (TOML's true is no count)."""
    return isinstance(v, int) and not isinstance(v, bool)


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        rng = f" in [{lo}, {hi}]" if hi is not None else (f" >= {lo}" if lo is not None else "")
        if not is_int(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            raise Bad(f"expected an integer{rng}, got {v!r}")
        return int(v)
    return check


def number(lo: float, hi: float | None, lo_open: bool) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        lo_txt = f"({lo}" if lo_open else f"[{lo}"
        rng = f"{lo_txt}, {hi}]" if hi is not None else f"{lo_txt}, inf)"
        ok = (is_int(v) or isinstance(v, float)) and math.isfinite(v)
        ok = ok and (v > lo if lo_open else v >= lo) and (hi is None or v <= hi)
        if not ok:
            raise Bad(f"expected a number in {rng}, got {v!r}")
        return float(v)
    return check


def choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if not isinstance(v, str) or v not in options:
            hint = did_you_mean(v, options) if isinstance(v, str) else ""
            raise Bad(f"expected one of {', '.join(map(repr, options))}, got {v!r}{hint}")
        return v
    return check


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise Bad(f"expected true or false, got {v!r}")
    return v


def optional_integer(lo: int) -> Callable[[Any], int | None]:
    inner = integer(lo)

    def check(v: Any) -> int | None:
        # TOML has no null: leaving the key out means "no limit"; "none" says it explicitly.
        if v == "none":
            return None
        return inner(v)
    return check


def per_task(v: dict, lo: int, hi: int | None, expected: str) -> Mapping[str, int]:
    """``{task = n, ...}`` with known task names and lo <= n (<= hi)."""
    tasks = known_tasks()
    out = {}
    for task, n in v.items():
        if task not in tasks:
            raise Bad(f"unknown task {task!r}{did_you_mean(task, tasks)}")
        if not is_int(n) or n < lo or (hi is not None and n > hi):
            raise Bad(f"expected {expected} for task {task!r}, got {n!r}")
        out[task] = int(n)
    return MappingProxyType(out)


def examples_per_task(v: Any) -> Mapping[str, int]:
    """``{task = n, ...}`` per task, or one integer for every task of the job (``"*"``)."""
    if is_int(v):
        return MappingProxyType({"*": integer(1)(v)})
    if not isinstance(v, dict):
        raise Bad(f"expected an integer >= 1 or a table task = integer, got {v!r}")
    return per_task(v, 1, None, "an integer >= 1")


def lengths_per_task(v: Any) -> Mapping[str, int]:
    """``{task = n, ...}``: the tasks cut below max_length (checked against it once parsed)."""
    if not isinstance(v, dict):
        raise Bad(f"expected a table task = integer (tokens), got {v!r}")
    return per_task(v, 8, 8192, "an integer in [8, 8192]")

