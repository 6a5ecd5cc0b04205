"""Power of the two-sided paired t-test, and the smallest effect it detects.

Kept apart from stats/core/significance.py so the runner's design check (``runner plan``) can ask for a
minimum detectable effect without importing scipy.stats and statsmodels (seconds on a busy
machine): this needs only ``scipy.special``.  The definitions are statsmodels' ``TTestPower``
(both tails of the noncentral t count), which tests/stats/test_power.py checks against.
"""

from __future__ import annotations

import functools
import math


def paired_power(d_z: float, n: int, alpha: float = 0.05) -> float:
    """P(reject H0) of a two-sided paired t-test with n pairs when the true effect is d_z."""
    from scipy.special import nctdtr, stdtrit

    df = n - 1
    crit = float(stdtrit(df, 1.0 - alpha / 2.0))
    nc = d_z * math.sqrt(n)
    power = float(1.0 - nctdtr(df, nc, crit) + nctdtr(df, nc, -crit))
    # scipy's noncentral t CDF returns nan for some large noncentralities at 1-2 degrees of
    # freedom; integrate over the chi-square denominator instead there
    return power if math.isfinite(power) else _power_by_quadrature(df, nc, crit)


def _power_by_quadrature(df: int, nc: float, crit: float, bins: int = 20000) -> float:
    """T' = (Z + nc) / sqrt(V / df), V ~ chi2(df): P(|T'| > crit) averaged over V at the
    midpoints of ``bins`` equal-probability bins of its distribution."""
    import numpy as np
    from scipy.special import ndtr

    c = crit * _chi2_scale(df, bins)
    return float(np.mean(ndtr(-c - nc) + ndtr(nc - c)))


@functools.lru_cache(maxsize=16)
def _chi2_scale(df: int, bins: int):
    """sqrt(V / df) at the chi-square(df) quantiles of the bins' midpoints: the same for every
    effect a bisection tries, so computed once per df."""
    import numpy as np
    from scipy.special import chdtri

    v = chdtri(df, 1.0 - (np.arange(bins) + 0.5) / bins)
    scale = np.sqrt(v / df)
    scale.setflags(write=False)   # shared by every call that hits the cache
    return scale


@functools.lru_cache(maxsize=256)
def mde_dz(n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The d_z at which ``paired_power`` equals ``power`` (bisection: power rises with d_z).

    Needs n >= 2 (a paired t-test has n - 1 degrees of freedom).
    """
    if n < 2:
        raise ValueError(f"a paired t-test needs 2+ pairs, got {n}")
    lo, hi = 0.0, 1.0
    while paired_power(hi, n, alpha) < power:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if paired_power(mid, n, alpha) < power:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2.0


def seeds_needed(effect: float, sd_diff: float, alpha: float = 0.05, power: float = 0.8,
                 most: int = 100_000) -> int | None:
    """The fewest matched seeds n with which a paired t-test detects a difference of
    ``effect`` (metric units) at ``power``, when the differences' sd is ``sd_diff``: the
    smallest n >= 2 with mde_dz(n) * sd_diff <= effect. None when sd_diff is not positive
    or more than ``most`` seeds would be needed."""
    if not (sd_diff > 0 and effect > 0):
        return None
    target = effect / sd_diff

    def enough(n: int) -> bool:
        return mde_dz(n, alpha, power) <= target

    if not enough(most):
        return None
    lo, hi = 1, 2
    while not enough(hi):
        lo, hi = hi, min(2 * hi, most)
    while hi - lo > 1:  # enough(hi), not enough(lo) (lo = 1: no test at all)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi
