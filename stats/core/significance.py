"""The study's statistics as pure functions (seeded where random), each returning a plain dict.

Every result dict carries ``reason``: ``None`` when the statistic was computed, otherwise
why it is not applicable (one seed, identical scores, ...) with its value fields ``None``.
Tables print such a value as "n/a" with the reason; statistics.json keeps null + reason.
"""

from __future__ import annotations

import functools
import gc
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import special
from scipy import stats as sps

# the methodology's bands (section 7.2): |d| < 0.5 small, < 0.8 medium, >= 0.8 large
EFFECT_BANDS = ((0.5, "small"), (0.8, "medium"), (math.inf, "large"))
HEDGES_BELOW_N = 20  # Hedges' small-sample correction is applied when n < 20
# RQ5's verdict vocabulary, written once: :func:`verdict_rule` says what each means
GENUINE = "genuine transfer"  # total parity: MT − TC significantly positive
EXPOSURE = "data exposure"  # total parity: MT − TC equivalent to 0 within ±margin (TOST)
# per-task parity answers another question (a gain beyond the tokens spent on the task
# itself), so its rows get their own words and are never counted with total parity's
BEYOND_TASK = "gain beyond same-task exposure"
TASK_EXPOSURE = "same-task exposure"
INCONCLUSIVE = "inconclusive"  # MT − TC neither significantly positive nor equivalent
NO_GAIN = "no multi-task gain"  # MT − ST tested and not significantly positive
NOT_TESTABLE = "not testable"  # parity not reached / not checkable, or too few seeds
PARITY_MODES = ("total", "per_task")
# (a gain beyond exposure, equivalence) per parity mode
MODE_VERDICTS = {"total": (GENUINE, EXPOSURE), "per_task": (BEYOND_TASK, TASK_EXPOSURE)}
EQUIVALENCE_MARGIN = 0.01  # the default equivalence margin δ: 1 point (metric units)
SEEDS_CAP = 1000  # "more seeds" projections stop here
_TOL = 1e-12  # scores closer than this are identical (metrics live in [0, 1] / [-1, 1])


def _na(reason: str, **fields: Any) -> dict[str, Any]:
    return {**fields, "reason": reason}


def _f(x: Any) -> float | None:
    """A finite float or None (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _differences(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired samples must have the same length")
    return a - b


def paired_t(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Paired t-test of mean(a − b) = 0, two-sided (scipy.stats.ttest_rel).

    d_i = a_i − b_i over matched units; t = mean(d) / (sd(d)/√n), sd with ddof=1, df = n−1.
    Assumes the differences are roughly normal; n < 2 or zero-variance differences: n/a.
    """
    d = _differences(a, b)
    n = len(d)
    fields = {"n": n, "mean_diff": _f(d.mean()) if n else None, "sd_diff": None,
              "t": None, "df": None, "p": None}
    if n < 2:
        return _na(f"{n} matched seed(s): a paired t-test needs at least 2", **fields)
    sd = float(d.std(ddof=1))
    fields["sd_diff"] = sd
    if np.ptp(d) <= _TOL:
        why = "identical scores" if abs(d[0]) <= _TOL else "identical differences"
        return _na(f"{why} in all {n} matched seeds: zero variance, t undefined", **fields)
    res = sps.ttest_rel(a, b)
    return {**fields, "t": _f(res.statistic), "df": n - 1, "p": _f(res.pvalue), "reason": None}


def wilcoxon(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Wilcoxon signed-rank test of the paired differences, two-sided (scipy, zeros dropped).

    Distribution-free beside the t-test; with n ≤ 5 non-zero differences its exact p can
    never fall below 0.0625, which the reader should know when it disagrees with t.
    """
    d = _differences(a, b)
    nonzero = int((np.abs(d) > _TOL).sum())
    fields = {"n": len(d), "n_nonzero": nonzero, "statistic": None, "p": None}
    if nonzero == 0:
        return _na("identical scores in every matched seed", **fields)
    res = sps.wilcoxon(np.where(np.abs(d) > _TOL, d, 0.0), zero_method="wilcox")
    return {**fields, "statistic": _f(res.statistic), "p": _f(res.pvalue), "reason": None}


def hedges_j(df: int) -> float | None:
    """Exact small-sample bias factor J(df) = Γ(df/2) / (√(df/2) Γ((df−1)/2)); None for df<2."""
    if df < 2:
        return None
    return float(math.exp(special.gammaln(df / 2) - special.gammaln((df - 1) / 2))
                 / math.sqrt(df / 2))


def effect_band(d: float | None) -> str | None:
    if d is None:
        return None
    for bound, name in EFFECT_BANDS:
        if abs(d) < bound:
            return name
    return "large"


def _effect(d: float, df: int, n: int, kind: str) -> dict[str, Any]:
    j = hedges_j(df)
    corrected = n < HEDGES_BELOW_N
    if corrected and j is None:
        return _na(f"Hedges' correction undefined with df = {df}", kind=kind, n=n, d=_f(d),
                   g=None, reported=None, corrected=True, band=None)
    reported = d * j if corrected else d
    return {"kind": kind, "n": n, "d": _f(d), "g": _f(d * j) if j is not None else None,
            "reported": _f(reported), "corrected": corrected,
            "band": effect_band(reported), "reason": None}


def cohens_dz(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Paired effect size d_z = mean(a−b) / sd(a−b) (ddof=1); Hedges' g = J(n−1)·d_z, n < 20.

    ``reported`` is g when n < 20, else d_z; ``band`` from |reported| (methodology 7.2).
    """
    d = _differences(a, b)
    n = len(d)
    if n < 2:
        return _na(f"{n} matched seed(s): no variance", kind="d_z", n=n, d=None, g=None,
                   reported=None, corrected=None, band=None)
    sd = d.std(ddof=1)
    if sd <= _TOL:
        return _na("zero variance of the differences: d_z undefined", kind="d_z", n=n, d=None,
                   g=None, reported=None, corrected=None, band=None)
    return _effect(float(d.mean() / sd), n - 1, n, "d_z")


def pooled_d(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Unpaired d = (mean a − mean b) / s_p, s_p² = ((n_a−1)s_a² + (n_b−1)s_b²)/(n_a+n_b−2).

    The methodology's formula; Hedges' g = J(n_a+n_b−2)·d when n_a + n_b < 20.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    na_, nb = len(a), len(b)
    base = {"kind": "pooled_d", "n": na_ + nb, "d": None, "g": None, "reported": None,
            "corrected": None, "band": None}
    if na_ < 2 or nb < 2:
        return {**base, "reason": "pooled d needs at least 2 seeds per system"}
    sp2 = ((na_ - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na_ + nb - 2)
    if sp2 <= _TOL ** 2:
        return {**base, "reason": "zero pooled variance: d undefined"}
    return _effect(float((a.mean() - b.mean()) / math.sqrt(sp2)), na_ + nb - 2, na_ + nb,
                   "pooled_d")


def students_t(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Unpaired two-sided Student's t-test, equal variances (``scipy.stats.ttest_ind``):
    t = (mean a − mean b) / (s_p √(1/n_a + 1/n_b)), df = n_a + n_b − 2. The methodology's
    pooled "multi-task vs single-task" test (section 9.2); it ignores the pairing by seed."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    fields = {"n_a": len(a), "n_b": len(b), "mean_a": _f(a.mean()) if len(a) else None,
              "mean_b": _f(b.mean()) if len(b) else None, "t": None, "df": None, "p": None}
    if len(a) < 2 or len(b) < 2:
        return _na("Student's t needs at least 2 scores per system", **fields)
    if np.ptp(a) <= _TOL and np.ptp(b) <= _TOL:
        return _na("identical scores within each system: zero variance, t undefined",
                   **fields)
    with warnings.catch_warnings():
        # scipy flags "precision loss" when one sample is constant; the pooled variance
        # (the other sample's) is still well defined
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        res = sps.ttest_ind(a, b)
    return {**fields, "t": _f(res.statistic), "df": len(a) + len(b) - 2, "p": _f(res.pvalue),
            "reason": None}


def seed_interval(values: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """t-interval over seeds: mean ± t_{(1+level)/2, n−1} · sd/√n (sd ddof=1); n < 2: n/a."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    fields = {"n": n, "mean": _f(v.mean()) if n else None, "sd": None, "low": None,
              "high": None, "level": level}
    if n < 2:
        return _na(f"{n} seed(s): no seed-level interval", **fields)
    sd = float(v.std(ddof=1))
    half = float(sps.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return {**fields, "sd": sd, "low": _f(v.mean() - half), "high": _f(v.mean() + half),
            "reason": None}


def percentile_interval(distribution: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval [q_{(1−level)/2}, q_{(1+level)/2}] (numpy linear quantiles).

    Resamples whose metric is undefined (NaN, e.g. a constant resample for Pearson) are
    dropped; None when none is left.
    """
    dist = np.asarray(distribution, dtype=float)
    dist = dist[np.isfinite(dist)]
    if dist.size == 0:
        return None
    lo, hi = np.quantile(dist, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def berg_kirkpatrick_p(observed_delta: float, distribution: np.ndarray) -> float:
    """Paired-bootstrap p-value of Berg-Kirkpatrick et al. (2012), one-sided "A better than B".

    δ = metric(A) − metric(B) on the test set; δ*_i the same on resample i (same units for
    both). p = #{i : δ*_i > 2δ} / B, i.e. how often the resampled gain exceeds its mean by
    more than δ (the bootstrap distribution shifted to H0). δ ≤ 0 gives p = 1.
    """
    dist = np.asarray(distribution, dtype=float)
    dist = dist[np.isfinite(dist)]
    if observed_delta <= 0 or dist.size == 0:
        return 1.0
    return float((dist > 2 * observed_delta).mean())


def holm(pvalues: Sequence[float | None], alpha: float = 0.05) -> list[float | None]:
    """Holm step-down adjusted p-values (statsmodels ``multipletests(method="holm")``).

    The family is the non-None p-values given; None stays None (a test that was n/a does
    not count towards the family size).
    """
    from statsmodels.stats.multitest import multipletests

    idx = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if not idx:
        return out
    # statsmodels' Holm branch calls gc.collect(): ~0.2 s per call in a process holding
    # pandas and matplotlib. Freezing the existing objects makes that collection cheap.
    gc.freeze()
    try:
        _, adj, _, _ = multipletests([pvalues[i] for i in idx], alpha=alpha, method="holm")
    finally:
        gc.unfreeze()
    for i, p in zip(idx, adj):
        out[i] = float(p)
    return out


def min_detectable_effect(n: int, sd_diff: float | None, alpha: float = 0.05,
                          power: float = 0.8) -> dict[str, Any]:
    """Smallest paired effect a two-sided paired t-test with n matched seeds detects at
    ``power`` (statsmodels ``TTestPower.solve_power``): d_z, and d_z·sd(d) in metric units.

    Uses the unadjusted alpha; Holm makes the first test of a family stricter still.
    """
    fields = {"n": n, "alpha": alpha, "power": power, "d_z": None, "raw": None}
    if n < 2:
        return _na(f"{n} matched seed(s): no power analysis", **fields)
    d = _mde_dz(n, alpha, power)
    raw = d * sd_diff if sd_diff is not None and sd_diff > _TOL else None
    # raw stays None (shown "n/a") when the differences have no spread to scale d_z by
    return {**fields, "d_z": _f(d), "raw": _f(raw), "reason": None}


@functools.lru_cache(maxsize=256)
def _mde_dz(n: int, alpha: float, power: float) -> float:
    """d_z solving power(d_z; n, alpha) = power; depends on n, alpha, power only (cached:
    statsmodels' root finder takes ~30 ms)."""
    from statsmodels.stats.power import TTestPower

    return float(TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power,
                                          alternative="two-sided"))


def token_parity(mt_tokens: int | None, tc_tokens: int | None, mt_tokenizer: str | None,
                 tc_tokenizer: str | None, threshold: float = 0.05) -> dict[str, Any]:
    """Token parity of one matched pair: gap = |MT − TC| / MT, holds when gap < threshold.

    Token counts are only comparable under one tokenizer: different or unknown tokenizers
    make parity n/a (never "holds").
    """
    fields = {"mt_tokens": mt_tokens, "tc_tokens": tc_tokens, "gap": None, "holds": None,
              "threshold": threshold}
    if mt_tokenizer is None or tc_tokenizer is None:
        return _na("tokenizer not recorded: parity cannot be checked", **fields)
    if mt_tokenizer != tc_tokenizer:
        return _na(f"mixed tokenizers ({mt_tokenizer} vs {tc_tokenizer}): token counts "
                   "are not comparable", **fields)
    if mt_tokens is None or tc_tokens is None:
        return _na("token count missing", **fields)
    if mt_tokens <= 0:
        return _na("multi-task job recorded 0 training tokens", **fields)
    gap = abs(mt_tokens - tc_tokens) / mt_tokens
    return {**fields, "gap": gap, "holds": gap < threshold, "reason": None}


def _pts(x: float) -> str:
    return f"{100 * x:+.2f} points"


def seeds_decide(mean: float, sd: float, n: int, margin: float, alpha: float) -> bool:
    """Whether n seeds at this mean and sd of MT − TC would decide: TOST inside ±margin, or
    the two-sided paired t rejects 0 (unadjusted)."""
    se = sd / math.sqrt(n)
    tost = abs(mean) + float(sps.t.ppf(1 - alpha, n - 1)) * se < margin
    return tost or abs(mean) > float(sps.t.ppf(1 - alpha / 2, n - 1)) * se


def seeds_to_decide(mean: float, sd: float, n: int, margin: float, alpha: float) -> int | None:
    """The fewest matched seeds (> n) at which MT − TC with this mean and seed sd would be
    either equivalent to 0 within ±margin or significantly non-zero; None above SEEDS_CAP."""
    if sd <= _TOL:
        return None
    lo, hi = n + 1, SEEDS_CAP
    if not seeds_decide(mean, sd, hi, margin, alpha):
        return None
    while lo < hi:  # the t quantiles fall and se shrinks with n: the condition is monotone
        mid = (lo + hi) // 2
        if seeds_decide(mean, sd, mid, margin, alpha):
            hi = mid
        else:
            lo = mid + 1
    return lo


def equivalence(differences: Sequence[float], margin: float = EQUIVALENCE_MARGIN,
                alpha: float = 0.05) -> dict[str, Any]:
    """Two one-sided paired t-tests (TOST) of |mean(MT − TC)| < margin over seeds, at alpha.

    Equivalent when the seed-level (1 − 2α) t-interval of the mean difference lies inside
    (−margin, +margin); p = max of the two one-sided p-values. ``seeds_needed``: the fewest
    seeds at which the observed mean and sd would decide either way
    (:func:`seeds_to_decide`).
    """
    d = np.asarray(differences, dtype=float)
    n = len(d)
    level = 1 - 2 * alpha
    fields = {"n": n, "margin": margin, "alpha": alpha, "level": level,
              "mean": _f(d.mean()) if n else None, "low": None, "high": None, "p": None,
              "equivalent": None, "seeds_needed": None}
    if n < 2:
        return _na(f"{n} matched seed(s): an equivalence test needs at least 2", **fields)
    sd = float(d.std(ddof=1))
    if sd <= _TOL:
        return _na("identical differences in every matched seed: zero variance", **fields)
    ci = seed_interval(d, level)
    se = sd / math.sqrt(n)
    p_low = float(sps.t.sf((d.mean() + margin) / se, n - 1))  # H0: mean <= −margin
    p_high = float(sps.t.cdf((d.mean() - margin) / se, n - 1))  # H0: mean >= +margin
    equivalent = bool(ci["low"] > -margin and ci["high"] < margin)
    return {**fields, "low": ci["low"], "high": ci["high"], "p": max(p_low, p_high),
            "equivalent": equivalent,
            "seeds_needed": None if equivalent else seeds_to_decide(float(d.mean()), sd, n,
                                                                    margin, alpha),
            "reason": None}


def verdict_rule(alpha: float = 0.05, threshold: float = 0.05,
                 margin: float = EQUIVALENCE_MARGIN) -> str:
    """The RQ5 verdict vocabulary and rule in words: the one text SUMMARY.txt and the RQ5
    tables' notes print, and what :func:`rq5_verdict` implements."""
    m = f"{100 * margin:g}"
    return (f"Verdicts (MT − TC and MT − ST: mean paired difference over the comparison's "
            f"shared seeds; significant: paired t over seeds, Holm-adjusted across the "
            f"comparison's tasks, p < {alpha:g}; equivalent: two one-sided paired t-tests at "
            f"{alpha:g}, i.e. the seed-level {100 * (1 - 2 * alpha):g}% interval of MT − TC "
            f"inside ±{m} points, the equivalence margin). Total parity (TC trained on as "
            f"many tokens as the whole multi-task job; parity holds when the TC job reached "
            f"its target and |MT − TC| / MT is below {100 * threshold:g}% in every matched "
            f"seed, one tokenizer): GENUINE TRANSFER: MT significantly above ST and "
            f"significantly above TC. DATA EXPOSURE: MT significantly above ST and MT − TC "
            f"equivalent to 0. Per-task parity (TC trained only on the tokens the multi-task "
            f"job spent on that task; its own table and counts, never pooled with total "
            f"parity): GAIN BEYOND SAME-TASK EXPOSURE and SAME-TASK EXPOSURE, by the same "
            f"tests; they say whether the gain exceeds what more of the task's own data gives, "
            f"not whether it is transfer. Either mode: INCONCLUSIVE: MT significantly above "
            f"ST, MT − TC neither significantly positive nor equivalent (the interval and the "
            f"seeds that would decide it are given); NO MULTI-TASK GAIN: MT − ST tested and "
            f"not significantly positive, nothing for exposure to explain; NOT TESTABLE: "
            f"parity not reached, violated or not checkable, or too few seeds for a test.")


def rq5_verdict(parity_holds: bool | None, parity_detail: str, mt_tc_diff: float | None,
                mt_tc_p_holm: float | None, mt_st_diff: float | None,
                mt_st_p_holm: float | None, alpha: float = 0.05,
                equivalent: dict[str, Any] | None = None,
                mode: str | None = "total") -> tuple[str, str]:
    """RQ5 verdict for one task and its reason, always with the numbers (:func:`verdict_rule`).

    A gain beyond exposure needs parity, MT − ST > 0 significant and MT − TC > 0 significant.
    Exposure needs evidence of equivalence (``equivalent``: :func:`equivalence` of the
    row's MT − TC differences), not a failure to reject: otherwise INCONCLUSIVE. Without a
    significant multi-task gain there is nothing for exposure to explain (ST = MT
    = 0.70, TC = 0.64 is "no multi-task gain", not "data exposure"). ``mode``: the parity mode, which picks the
    words (per-task parity has its own).
    """
    beyond, exposure = MODE_VERDICTS.get(mode or "total", MODE_VERDICTS["total"])

    def fmt_p(p: float | None) -> str:
        return "n/a" if p is None else f"{p:.4g}"

    def significant(diff: float | None, p: float | None) -> bool:
        return diff is not None and p is not None and diff > 0 and p < alpha

    tc = ("MT − TC n/a" if mt_tc_diff is None
          else f"MT − TC = {_pts(mt_tc_diff)} (Holm p = {fmt_p(mt_tc_p_holm)})")
    st = ("MT − ST n/a" if mt_st_diff is None
          else f"MT − ST = {_pts(mt_st_diff)} (Holm p = {fmt_p(mt_st_p_holm)})")
    if parity_holds is not True:
        why = "parity violated" if parity_holds is False else "parity not checkable"
        if parity_detail.startswith("parity not reached"):
            why, parity_detail = parity_detail, ""  # says it already, with the numbers
        return NOT_TESTABLE, f"{why}{': ' if parity_detail else ''}{parity_detail}; {tc}; {st}"
    holds = f"parity holds ({parity_detail})"
    if mt_st_p_holm is None:
        return NOT_TESTABLE, f"{st} has no test (too few seeds); {tc}; {holds}"
    if not significant(mt_st_diff, mt_st_p_holm):
        return NO_GAIN, (f"no multi-task gain to explain: {st} is not significantly "
                         f"positive; {tc}; {holds}")
    if mt_tc_p_holm is None:
        return NOT_TESTABLE, f"{st} < {alpha} but {tc} has no test; {holds}"
    if significant(mt_tc_diff, mt_tc_p_holm):
        return beyond, f"{st} < {alpha} and {tc} < {alpha}; {holds}"
    eq = equivalent or {}
    if eq.get("equivalent"):
        return exposure, (f"{st} < {alpha} and MT − TC is equivalent to 0: its "
                          f"{_interval_text(eq)} lies inside ±{100 * eq['margin']:g} points "
                          f"(TOST p = {fmt_p(eq['p'])}); {holds}")
    return INCONCLUSIVE, (f"{st} < {alpha} but {tc} is neither significantly positive nor "
                          f"shown equivalent to 0: {_undecided_text(eq)}; {holds}")


def _interval_text(eq: dict[str, Any]) -> str:
    return (f"seed-level {100 * eq['level']:g}% interval "
            f"[{100 * eq['low']:+.2f}, {100 * eq['high']:+.2f}] points")


def _undecided_text(eq: dict[str, Any]) -> str:
    """Why equivalence is not shown, and how many seeds would decide at these numbers."""
    if eq.get("low") is None:
        return f"no equivalence test ({eq.get('reason') or 'not computed'})"
    more = (f"about {eq['seeds_needed']} seeds at the observed mean and sd would decide it"
            if eq.get("seeds_needed") else f"more than {SEEDS_CAP} seeds would be needed at "
            "the observed mean and sd")
    return (f"its {_interval_text(eq)} is not inside ±{100 * eq['margin']:g} points; {more}")
