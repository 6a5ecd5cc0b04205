"""stats.core.significance against scipy / statsmodels on known data, and the degenerate cases."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from stats.core import significance as T

A = [0.83, 0.84, 0.82, 0.85, 0.83]
B = [0.80, 0.82, 0.80, 0.81, 0.805]


def test_paired_t_matches_scipy():
    res = T.paired_t(A, B)
    ref = sps.ttest_rel(A, B)
    assert res["t"] == pytest.approx(ref.statistic) and res["p"] == pytest.approx(ref.pvalue)
    assert res["df"] == 4 and res["n"] == 5 and res["reason"] is None
    assert res["mean_diff"] == pytest.approx(np.mean(np.subtract(A, B)))


def test_wilcoxon_matches_scipy():
    res = T.wilcoxon(A, B)
    ref = sps.wilcoxon(np.subtract(A, B))
    assert res["statistic"] == pytest.approx(ref.statistic) and res["p"] == pytest.approx(ref.pvalue)


def test_effect_sizes_by_formula_and_hedges():
    d = np.subtract(A, B)
    dz = d.mean() / d.std(ddof=1)
    res = T.cohens_dz(A, B)
    assert res["d"] == pytest.approx(dz)
    j = math.gamma(2) / (math.sqrt(2) * math.gamma(1.5))  # exact J(df = 4)
    assert res["g"] == pytest.approx(dz * j) and res["corrected"] and res["reported"] == res["g"]
    # J(df) is close to the usual approximation 1 - 3 / (4 df - 1)
    assert T.hedges_j(30) == pytest.approx(1 - 3 / (4 * 30 - 1), abs=1e-4)
    a, b = np.array(A), np.array(B)
    sp = math.sqrt(((4 * a.var(ddof=1)) + 4 * b.var(ddof=1)) / 8)
    pooled = T.pooled_d(A, B)
    assert pooled["d"] == pytest.approx((a.mean() - b.mean()) / sp)
    assert pooled["g"] == pytest.approx(pooled["d"] * T.hedges_j(8))
    big = T.cohens_dz(np.arange(25.0) + np.random.default_rng(0).normal(size=25), np.arange(25.0))
    assert big["corrected"] is False and big["reported"] == big["d"]


@pytest.mark.parametrize("d,band", [(0.1, "small"), (-0.49, "small"), (0.5, "medium"),
                                    (-0.79, "medium"), (0.8, "large"), (-3.0, "large")])
def test_effect_bands(d, band):
    assert T.effect_band(d) == band


def test_seed_interval_matches_scipy_t_interval():
    res = T.seed_interval(A)
    lo, hi = sps.t.interval(0.95, 4, loc=np.mean(A), scale=sps.sem(A))
    assert res["low"] == pytest.approx(lo) and res["high"] == pytest.approx(hi)


def test_holm_matches_statsmodels_and_hand_computation():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.20]
    ours = T.holm(p)
    assert ours == pytest.approx(list(multipletests(p, method="holm")[1]))
    # by hand: sorted 0.01*4, 0.03*3, max(0.04*2, .09), 0.2*1 -> max-accumulated
    assert ours == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert T.holm([None, 0.01, None]) == [None, 0.01, None]  # n/a tests are not in the family


def test_min_detectable_effect_has_80_percent_power():
    from statsmodels.stats.power import TTestPower

    res = T.min_detectable_effect(5, sd_diff=0.01)
    assert TTestPower().power(res["d_z"], 5, 0.05) == pytest.approx(0.8, abs=1e-6)
    assert res["raw"] == pytest.approx(res["d_z"] * 0.01)
    assert T.min_detectable_effect(1, 0.01)["d_z"] is None


def test_berg_kirkpatrick_p_value():
    dist = np.array([0.0, 0.01, 0.02, 0.05, 0.07])
    assert T.berg_kirkpatrick_p(0.02, dist) == pytest.approx(2 / 5)  # 0.05, 0.07 exceed 0.04
    assert T.berg_kirkpatrick_p(-0.01, dist) == 1.0
    assert T.percentile_interval(np.array([np.nan, 1.0, 2.0, 3.0])) == pytest.approx((1.05, 2.95))


def test_degenerate_inputs_are_not_applicable_with_reason():
    one = T.paired_t([0.8], [0.7])
    assert one["p"] is None and "1 matched seed" in one["reason"]
    same = T.paired_t([0.8, 0.8, 0.8], [0.8, 0.8, 0.8])
    assert same["p"] is None and "identical scores" in same["reason"]
    const = T.paired_t([0.9, 0.8], [0.8, 0.7])
    assert const["p"] is None and "identical differences" in const["reason"]
    assert T.wilcoxon([0.8, 0.8], [0.8, 0.8])["p"] is None
    assert T.cohens_dz([0.8], [0.7])["reported"] is None
    assert T.cohens_dz([0.8, 0.8], [0.8, 0.8])["reported"] is None
    assert T.pooled_d([0.8], [0.7, 0.6])["reason"]
    assert T.seed_interval([0.8])["low"] is None
    # Hedges' J is undefined with one degree of freedom: reported as n/a, not as 0
    two = T.cohens_dz([0.9, 0.8], [0.7, 0.75])
    assert two["reported"] is None and "df = 1" in two["reason"]


def test_token_parity():
    ok = T.token_parity(1_000_000, 1_040_000, "tok", "tok", 0.05)
    assert ok["holds"] is True and ok["gap"] == pytest.approx(0.04)
    bad = T.token_parity(1_000_000, 900_000, "tok", "tok", 0.05)
    assert bad["holds"] is False and bad["gap"] == pytest.approx(0.10)
    assert T.token_parity(1_000_000, 900_000, "tok", "tok", 0.15)["holds"] is True
    mixed = T.token_parity(1_000_000, 1_000_000, "tok", "other", 0.05)
    assert mixed["holds"] is None and "mixed tokenizers" in mixed["reason"]


def test_students_t_and_pooled_d_match_scipy_and_the_methodology():
    res = T.students_t(A, B)
    ref = sps.ttest_ind(A, B)  # the methodology's call (section 9.2): equal variances
    assert res["t"] == pytest.approx(ref.statistic, rel=1e-12)
    assert res["p"] == pytest.approx(ref.pvalue, rel=1e-12) and res["df"] == 8
    assert T.students_t([0.8], B)["p"] is None
    # one constant sample is fine (scipy warns about precision, we do not pass that on)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        const = T.students_t([0.5, 0.5, 0.5], [0.71, 0.61, 0.81])
    sp = math.sqrt(2 * np.var([0.71, 0.61, 0.81], ddof=1) / 4)
    t = (0.5 - 0.71) / (sp * math.sqrt(2 / 3))
    assert const["t"] == pytest.approx(t) and const["p"] == pytest.approx(2 * sps.t.sf(-t, 4))
    assert "zero variance" in T.students_t([0.8, 0.8], [0.7, 0.7])["reason"]


def test_rq5_verdict_needs_a_multi_task_gain_as_well_as_mt_above_tc():
    # issue 12: ST = MT = 0.70, TC = 0.64 -- MT − ST +0.5 points (Holm p 0.7), MT − TC
    # +6 points (Holm p 0.001): MT only beats an over-trained TC; nothing to explain
    v, why = T.rq5_verdict(True, "gap 0%", 0.06, 0.001, 0.005, 0.7)
    assert v == T.NO_GAIN and "no multi-task gain" in why and "+6.00 points" in why
    assert T.rq5_verdict(True, "gap 0%", 0.06, 0.001, None, None)[0] == T.NOT_TESTABLE
    assert T.rq5_verdict(True, "gap 0%", 0.06, 0.001, 0.03, 0.06)[0] == T.NO_GAIN
    assert T.rq5_verdict(True, "gap 0%", 0.06, 0.001, -0.03, 0.001)[0] == T.NO_GAIN
    # a multi-task gain, but MT − TC untestable (identical differences): not exposure either
    assert T.rq5_verdict(True, "gap 0%", 0.01, None, 0.03, 0.001)[0] == T.NOT_TESTABLE
    # the rule in words names the vocabulary and the thresholds it is given
    rule = T.verdict_rule(0.01, 0.1, 0.02)
    assert "GENUINE TRANSFER: MT significantly above ST and significantly above TC" in rule
    assert "p < 0.01" in rule and "below 10%" in rule and "parity not reached" in rule
    assert "inside ±2 points" in rule and "98% interval" in rule
    for word in (T.EXPOSURE, T.INCONCLUSIVE, T.NO_GAIN, T.NOT_TESTABLE, T.BEYOND_TASK,
                 T.TASK_EXPOSURE):
        assert word.upper() in rule


def _eq(mean: float, *, equivalent: bool) -> dict:
    return {"equivalent": equivalent, "margin": 0.01, "level": 0.9, "low": mean - 0.005,
            "high": mean + 0.005, "p": 0.01 if equivalent else 0.3, "seeds_needed": 12}


def test_rq5_verdict_rules():
    g, why = T.rq5_verdict(True, "gap 0%", 0.03, 0.001, 0.03, 0.001)
    assert g == T.GENUINE and "+3.00 points" in why
    assert T.rq5_verdict(False, "gap 9%", 0.03, 0.001, 0.03, 0.001)[0] == T.NOT_TESTABLE
    assert T.rq5_verdict(None, "mixed", 0.03, 0.001, 0.03, 0.001)[0] == T.NOT_TESTABLE
    # not significant is not evidence of equivalence (issue 24)
    v, why = T.rq5_verdict(True, "gap 0%", 0.01, 0.3, 0.03, 0.001)
    assert v == T.INCONCLUSIVE and "shown equivalent" in why and "no equivalence" in why
    v, why = T.rq5_verdict(True, "gap 0%", 0.01, 0.3, 0.03, 0.001,
                           equivalent=_eq(0.01, equivalent=False))
    assert v == T.INCONCLUSIVE and "about 12 seeds" in why and "[+0.50, +1.50]" in why
    v, why = T.rq5_verdict(True, "gap 0%", 0.001, 0.9, 0.03, 0.001,
                           equivalent=_eq(0.001, equivalent=True))
    assert v == T.EXPOSURE and "inside ±1 points" in why
    assert T.rq5_verdict(True, "gap 0%", 0.01, 0.3, 0.0, 0.9)[0] == T.NO_GAIN
    assert T.rq5_verdict(True, "gap 0%", None, None, None, None)[0] == T.NOT_TESTABLE
    # per-task parity: its own words for the same tests
    assert T.rq5_verdict(True, "gap 0%", 0.03, 0.001, 0.03, 0.001,
                         mode="per_task")[0] == T.BEYOND_TASK
    assert T.rq5_verdict(True, "gap 0%", 0.0, 0.9, 0.03, 0.001, equivalent=_eq(
        0.0, equivalent=True), mode="per_task")[0] == T.TASK_EXPOSURE


def test_equivalence_is_two_one_sided_t_tests_over_seeds():
    d = np.array([0.002, -0.004, 0.001, 0.003, -0.001, 0.0005])
    eq = T.equivalence(d, margin=0.01, alpha=0.05)
    n, se = len(d), d.std(ddof=1) / math.sqrt(len(d))
    p_lo = sps.ttest_1samp(d, -0.01, alternative="greater").pvalue
    p_hi = sps.ttest_1samp(d, 0.01, alternative="less").pvalue
    assert eq["p"] == pytest.approx(max(p_lo, p_hi))
    half = sps.t.ppf(0.95, n - 1) * se
    assert (eq["low"], eq["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert eq["equivalent"] is True and eq["level"] == pytest.approx(0.9)
    assert (eq["p"] < 0.05) == eq["equivalent"]  # the interval and the TOST p agree
    # a +2 point difference with 3 seeds: not equivalent, and not yet significant either
    wide = T.equivalence([0.005, 0.035, 0.02], margin=0.01)
    assert wide["equivalent"] is False and wide["seeds_needed"] > 3
    m = wide["seeds_needed"]
    sd = float(np.std([0.005, 0.035, 0.02], ddof=1))
    assert T.seeds_decide(0.02, sd, m, 0.01, 0.05)
    assert not T.seeds_decide(0.02, sd, m - 1, 0.01, 0.05)
    assert "2 matched seed" in T.equivalence([0.01])["reason"] or \
        "at least 2" in T.equivalence([0.01])["reason"]
    assert T.equivalence([0.01, 0.01])["equivalent"] is None


def test_null_studies_rarely_call_genuine_transfer():
    """200 null studies (MT = TC = ST in truth; 3 tasks, 5 seeds; parity holds): the verdict
    pipeline (paired t, Holm across tasks, parity, verdict) says "genuine transfer" for at most
    5% of the studies. Seed-level scores only, so the pure functions run directly."""
    rng = np.random.default_rng(2026)
    tasks, seeds, genuine = 3, 5, 0
    for _ in range(200):
        seed_effect = rng.normal(0, 0.01, size=(tasks, seeds))
        st, mt, tc = (0.8 + seed_effect + rng.normal(0, 0.005, size=(tasks, seeds))
                      for _ in range(3))
        mt_tc = [T.paired_t(mt[k], tc[k]) for k in range(tasks)]
        mt_st = [T.paired_t(mt[k], st[k]) for k in range(tasks)]
        p_tc = T.holm([r["p"] for r in mt_tc])
        p_st = T.holm([r["p"] for r in mt_st])
        parity = T.token_parity(7_600_000, 7_600_100, "tok", "tok")
        verdicts = [T.rq5_verdict(parity["holds"], "gap", mt_tc[k]["mean_diff"], p_tc[k],
                                  mt_st[k]["mean_diff"], p_st[k])[0] for k in range(tasks)]
        genuine += T.GENUINE in verdicts
    assert genuine <= 10, f"{genuine} of 200 null studies called genuine transfer"
