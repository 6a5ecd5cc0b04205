"""Every number the tables and SUMMARY.txt print, formatted here.

(Not here: the statistics' own reason strings, which core/ writes into statistics.json, and
the figures' axis annotations.) Metric values are printed as points (metric × 100): one decimal in the LaTeX tables (F1,
accuracy, Pearson alike, as BLURB reports), two in SUMMARY.txt. A missing or non-finite
value prints "n/a" where the caller allows it, so no output shows NaN.
"""

from __future__ import annotations

import math
from typing import Any

NA = "n/a"


def ok(x: Any) -> bool:
    """A value that can be printed: not None, not NaN or infinite."""
    return x is not None and not (isinstance(x, float) and not math.isfinite(x))


def pts(x: float, signed: bool = False) -> str:
    """Table cell: metric × 100, one decimal ("78.1", "+3.0"; zero unsigned)."""
    v = round(100 * x, 1) + 0.0  # + 0.0 turns a rounded -0.0 into 0.0
    if signed and v != 0:
        return f"{v:+.1f}"
    return f"{v:.1f}"


def points(x: float | None, signed: bool = True) -> str:
    """SUMMARY.txt: metric × 100, two decimals ("+3.07", zero unsigned); n/a when missing."""
    if not ok(x):
        return NA
    v = round(100 * x, 2) + 0.0  # + 0.0 turns a rounded -0.0 into 0.0
    return f"{v:+.2f}" if signed and v != 0 else f"{v:.2f}"


def interval(lo: float | None, hi: float | None, signed: bool = True) -> str:
    """SUMMARY.txt: "[lo, hi]" in points (:func:`points`); n/a when either end is missing."""
    return NA if lo is None or hi is None else f"[{points(lo, signed)}, {points(hi, signed)}]"


def p_value(p: float | None) -> str:
    """SUMMARY.txt: four decimals, "<0.0001" below that; n/a when missing."""
    return NA if p is None else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def p_cell(p: float) -> str:
    """Table cell: three decimals, "$<$0.001" below that."""
    return "$<$0.001" if p < 0.001 else f"{p:.3f}"


def stars(p: float | None, alpha: float) -> str:
    """* p < alpha, ** p < 0.01, *** p < 0.001 (Holm-adjusted p)."""
    if p is None or p >= alpha:
        return ""
    return "$^{***}$" if p < 0.001 else "$^{**}$" if p < 0.01 else "$^{*}$"


def num(x: float | None, spec: str) -> str:
    """``format(x, spec)``; n/a when None."""
    return NA if x is None else format(x, spec)


def fmt(x: float | None, digits: int = 1, scale: float = 1.0, sign: bool = False) -> str:
    """A number scaled (e.g. 100 for points) with ``digits`` decimals; None/NaN -> n/a.
    Unlike :func:`pts` a rounded zero keeps its sign ("+0.0", "-0.0"): the RQ2-RQ4 tables."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return NA
    return f"{x * scale:+.{digits}f}" if sign else f"{x * scale:.{digits}f}"


def millions(x: float) -> str:
    """Millions, two decimals (training tokens in tables, parameters): "1.23"."""
    return f"{x / 1e6:.2f}"


def tokens(x: float) -> str:
    """SUMMARY.txt: a token count with thousands separators, no decimals: "1,234,567"."""
    return f"{x:,.0f}"


def coefficient(x: float) -> str:
    """An effect size or correlation, signed, two decimals: "+0.42"."""
    return f"{x:+.2f}"


def percent(x: float) -> str:
    """SUMMARY.txt: a fraction as a percentage, one decimal: "12.5%"."""
    return f"{100 * x:.1f}%"


def count(x: int) -> str:
    """An integer with LaTeX thousands separators: 12{,}345."""
    return f"{x:,}".replace(",", "{,}")


def share(x: float | None) -> str:
    """A fraction as a LaTeX percentage, one decimal: 12.5\\%."""
    return NA if x is None else f"{100 * x:.1f}\\%"
