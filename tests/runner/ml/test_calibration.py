"""ECE and temperature scaling against hand-computed values."""

import math

import numpy as np
import pytest

from runner.ml.calibration import (
    N_BINS,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    flatten_token_logits,
    nll,
    reliability_bins,
    top_label,
)


def test_ece_hand_example():
    # Six predictions, 15 bins of width 1/15.
    #   conf 0.9 (x4) -> bin 14 = (13/15, 14/15]: correct 3 of 4 -> acc 0.75, |0.75-0.9| = 0.15
    #   conf 0.5 (x2) -> bin 8  = (7/15, 8/15]:  correct 1 of 2 -> acc 0.50, |0.5-0.5|  = 0
    # ECE = 4/6 * 0.15 + 2/6 * 0 = 0.1
    conf = [0.9, 0.9, 0.9, 0.9, 0.5, 0.5]
    corr = [1, 1, 1, 0, 1, 0]
    assert expected_calibration_error(conf, corr) == pytest.approx(0.1, abs=1e-12)
    bins = reliability_bins(conf, corr)
    assert len(bins) == N_BINS
    assert bins[13]["count"] == 4 and bins[13]["accuracy"] == pytest.approx(0.75)
    assert bins[7]["count"] == 2 and bins[7]["confidence"] == pytest.approx(0.5)
    assert sum(b["count"] for b in bins) == 6
    assert bins[0]["accuracy"] is None  # empty bins carry None, never NaN


def test_bin_edges_closed_on_the_right():
    bins = reliability_bins([0.0, 1.0, 0.999], [1, 1, 0])
    assert bins[0]["count"] == 1  # confidence 0 goes to the first bin
    assert bins[14]["count"] == 2  # 1.0 and 0.999 are in (14/15, 1]


def test_top_label_multiclass_and_nll_by_hand():
    # Row 1: logits (ln 3, 0) -> p = (0.75, 0.25); label 0 -> correct, conf 0.75.
    # Row 2: logits (0, ln 4) -> p = (0.2, 0.8); label 0 -> wrong, conf 0.8.
    z = np.array([[math.log(3), 0.0], [0.0, math.log(4)]])
    y = np.array([0, 0])
    conf, corr = top_label(z, y)
    assert conf == pytest.approx([0.75, 0.8])
    assert list(corr) == [1.0, 0.0]
    # NLL = -(ln 0.75 + ln 0.2) / 2
    assert nll(z, y) == pytest.approx(-(math.log(0.75) + math.log(0.2)) / 2)
    # At T = 2: row 1 p0 = sqrt3/(sqrt3+1), row 2 p0 = 1/(1+2) -> NLL by hand.
    want = -(math.log(math.sqrt(3) / (math.sqrt(3) + 1)) + math.log(1 / 3)) / 2
    assert nll(z, y, temperature=2.0) == pytest.approx(want)


def test_multilabel_confidence_by_hand():
    # Logit 0 -> p 0.5 -> conf 0.5, predicted positive (p >= 0.5); logit ln 3 -> p 0.75;
    # logit -ln 9 -> p 0.1 -> conf 0.9, predicted negative.
    z = np.array([[0.0, math.log(3), -math.log(9)]])
    y = np.array([[1, 0, 0]])
    conf, corr = top_label(z, y, kind="multilabel")
    assert conf == pytest.approx([0.5, 0.75, 0.9])
    assert list(corr) == [1.0, 0.0, 1.0]
    want = -(math.log(0.5) + math.log(0.25) + math.log(0.9)) / 3
    assert nll(z, y, kind="multilabel") == pytest.approx(want)


def test_temperature_recovers_known_overconfidence():
    # Labels drawn from softmax(z); the model reports 3 z, so the right temperature is 3.
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4000, 4))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(4, p=row) for row in p])
    fit = fit_temperature(3 * z, y)
    assert fit.temperature == pytest.approx(3.0, rel=0.1)
    assert fit.nll_after < fit.nll_before
    conf_b, corr_b = top_label(3 * z, y)
    conf_a, corr_a = top_label(3 * z, y, temperature=fit.temperature)
    assert expected_calibration_error(conf_a, corr_a) < expected_calibration_error(conf_b, corr_b)
    assert np.array_equal(corr_a, corr_b)  # argmax unchanged


@pytest.mark.parametrize("kind", ["multiclass", "multilabel"])
@pytest.mark.parametrize("seed", range(8))
def test_temperature_never_increases_validation_nll(kind, seed):
    rng = np.random.default_rng(seed)
    scale = [0.2, 1.0, 5.0, 50.0][seed % 4]  # under-, well-, over-, wildly over-confident
    n = int(rng.integers(3, 200))
    z = scale * rng.normal(size=(n, 3))
    y = rng.integers(0, 2, size=(n, 3)) if kind == "multilabel" else rng.integers(0, 3, size=n)
    fit = fit_temperature(z, y, kind)
    assert fit.nll_after <= fit.nll_before
    assert fit.nll_after == pytest.approx(nll(z, y, kind, fit.temperature))


def test_flat_logits_keep_t_one():
    # All-zero logits: NLL = ln 3 for every T; the guard keeps NLL from rising.
    fit = fit_temperature(np.zeros((5, 3)), np.array([0, 1, 2, 0, 1]))
    assert fit.nll_after == pytest.approx(math.log(3))
    assert fit.nll_after <= fit.nll_before


def test_token_flattening_and_report():
    rng = np.random.default_rng(1)
    sents = [rng.normal(size=(k, 3)) * 4 for k in (3, 0, 5)]
    tags = [rng.integers(0, 3, size=k) for k in (3, 0, 5)]
    z, y = flatten_token_logits(sents, tags)
    assert z.shape == (8, 3) and y.shape == (8,)
    rep = calibration_report(z, y, z, y, kind="token")
    assert rep["n_test"] == 8 and rep["n_bins"] == 15
    assert rep["nll_val_after"] <= rep["nll_val_before"]
    assert rep["ece_before"] == pytest.approx(
        expected_calibration_error(*top_label(z, y, "token")))
    assert sum(b["count"] for b in rep["bins_after"]) == 8
    with pytest.raises(ValueError):
        flatten_token_logits([np.zeros((2, 3))], [[0]])


def test_bad_input_raises():
    with pytest.raises(ValueError):
        fit_temperature(np.array([[0.0, np.nan]]), np.array([0]))
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((2, 2)), np.array([0, 2]))
    with pytest.raises(ValueError):
        reliability_bins([1.2], [1])
