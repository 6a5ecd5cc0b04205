"""Calibration for RQ3: expected calibration error and temperature scaling (numpy/scipy only).

Definitions (the RQ3 evaluation files record exactly these, see results/README.md):

* **Top-label confidence.**  Multi-class softmax: ``conf_i = max_k p_ik`` and
  ``correct_i = [argmax_k p_ik == y_i]``.  NER (token level): every scored word position
  (the first sub-word of each word, as the metric sees it) is one multi-class prediction over
  the tags, so NER is multi-class on the flattened positions.  Multi-label sigmoid (HoC): every
  (example, label) pair is one binary prediction with ``p = sigmoid(z)``,
  ``conf = max(p, 1 - p)`` and ``correct = [(p >= 0.5) == y]``.
* **ECE with M = 15 equal-width bins.**  Bin m (m = 1..M) holds the predictions with
  ``conf in ((m-1)/M, m/M]`` (a confidence of exactly 0 goes to bin 1).  With n predictions,
  ``ECE = sum_m (|B_m| / n) * |acc(B_m) - conf(B_m)|`` where ``acc`` is the mean of
  ``correct`` and ``conf`` the mean confidence in the bin; empty bins contribute 0.
  (Guo et al. 2017, "On calibration of modern neural networks", eq. 3.)
* **Temperature scaling.**  One scalar T > 0 divides every logit: ``p = softmax(z / T)`` (or
  ``sigmoid(z / T)``).  T is fitted on the *validation* logits by minimising the mean negative
  log-likelihood (multi-class: ``-log p_{i,y_i}``; multi-label: mean binary cross-entropy over
  all (example, label) pairs) over ``log T`` in [log 0.05, log 20] with bounded Brent
  (scipy ``minimize_scalar``).  The NLL is convex in 1/T, so the search finds the optimum in the
  interval; as a guard T = 1 is kept whenever it is at least as good, so the fitted T never
  raises validation NLL.  Argmax predictions (hence accuracy and F1) do not change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit, log_softmax, softmax

N_BINS = 15  # the study's ECE bin count (RQ3)
LOG_T_BOUNDS = (float(np.log(0.05)), float(np.log(20.0)))  # search interval for log T

KINDS = ("multiclass", "multilabel", "token")


# --------------------------------------------------------------------------------------------
# Confidences
# --------------------------------------------------------------------------------------------

def _as_logits(logits, labels, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes; ``token`` input is already flattened to (positions, tags)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"logits must be a non-empty 2-D array, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contain NaN or infinity")
    if kind == "multilabel":
        if y.shape != z.shape:
            raise ValueError(f"multilabel labels must have the logits' shape {z.shape}, got {y.shape}")
        y = y.astype(np.float64)
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("multilabel labels must be 0/1")
    else:
        if y.shape != (z.shape[0],):
            raise ValueError(f"labels must have shape ({z.shape[0]},), got {y.shape}")
        y = y.astype(np.int64)
        if y.min() < 0 or y.max() >= z.shape[1]:
            raise ValueError(f"labels must index the {z.shape[1]} classes")
    return z, y


def flatten_token_logits(logits_per_sentence, tags_per_sentence) -> tuple[np.ndarray, np.ndarray]:
    """NER: per-sentence (words, tags) logit arrays and tag-id lists -> one (positions, tags) pair.

    Only the scored positions are passed in (one row per word, first sub-word), so the result is
    token-level multi-class input for :func:`calibration_report` with ``kind="token"``.
    """
    zs = [np.asarray(z, dtype=np.float64) for z in logits_per_sentence]
    ys = [np.asarray(t, dtype=np.int64) for t in tags_per_sentence]
    if len(zs) != len(ys):
        raise ValueError(f"{len(zs)} logit arrays but {len(ys)} tag lists")
    for i, (z, y) in enumerate(zip(zs, ys)):
        if z.ndim != 2 or z.shape[0] != y.shape[0]:
            raise ValueError(f"sentence {i}: logits {z.shape} do not match {y.shape[0]} tags")
    kept = [(z, y) for z, y in zip(zs, ys) if z.shape[0]]
    if not kept:
        raise ValueError("no scored word positions")
    return np.concatenate([z for z, _ in kept]), np.concatenate([y for _, y in kept])


def top_label(logits, labels, kind: str = "multiclass",
              temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) per prediction under temperature T (see module docstring)."""
    z, y = _as_logits(logits, labels, kind)
    z = z / float(temperature)
    if kind == "multilabel":
        p = expit(z)
        conf = np.maximum(p, 1.0 - p).ravel()
        correct = ((p >= 0.5) == (y == 1)).ravel()
    else:
        p = softmax(z, axis=1)
        conf = p.max(axis=1)
        correct = p.argmax(axis=1) == y
    return conf, correct.astype(np.float64)


# --------------------------------------------------------------------------------------------
# ECE and reliability bins
# --------------------------------------------------------------------------------------------

def reliability_bins(confidences, correct, n_bins: int = N_BINS) -> list[dict]:
    """Per equal-width bin: lower/upper edge, count, mean confidence, accuracy (None if empty)."""
    conf = np.asarray(confidences, dtype=np.float64)
    corr = np.asarray(correct, dtype=np.float64)
    if conf.shape != corr.shape or conf.ndim != 1 or conf.size == 0:
        raise ValueError("confidences and correct must be equal-length, non-empty 1-D arrays")
    if np.any((conf < 0) | (conf > 1)) or not np.all(np.isfinite(conf)):
        raise ValueError("confidences must lie in [0, 1]")
    # Bin m holds conf in ((m-1)/M, m/M]: ceil(conf*M) - 1, with conf == 0 sent to bin 0.
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=corr, minlength=n_bins)
    bins = []
    for m in range(n_bins):
        c = int(count[m])
        bins.append({
            "lower": m / n_bins, "upper": (m + 1) / n_bins, "count": c,
            "confidence": float(conf_sum[m] / c) if c else None,
            "accuracy": float(acc_sum[m] / c) if c else None,
        })
    return bins


def ece_from_bins(bins: list[dict]) -> float:
    """ECE = sum_m (|B_m|/n) |acc(B_m) - conf(B_m)| from :func:`reliability_bins` output."""
    n = sum(b["count"] for b in bins)
    if n == 0:
        raise ValueError("no predictions in the bins")
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"])
                     for b in bins if b["count"]))


def expected_calibration_error(confidences, correct, n_bins: int = N_BINS) -> float:
    """ECE with ``n_bins`` equal-width bins over top-label confidence (module docstring)."""
    return ece_from_bins(reliability_bins(confidences, correct, n_bins))


# --------------------------------------------------------------------------------------------
# Temperature scaling
# --------------------------------------------------------------------------------------------

def nll(logits, labels, kind: str = "multiclass", temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of the labels under ``logits / temperature``."""
    z, y = _as_logits(logits, labels, kind)
    return _nll(z, y, kind, float(temperature))


def _nll(z: np.ndarray, y: np.ndarray, kind: str, temperature: float) -> float:
    s = z / temperature
    if kind == "multilabel":
        # -[y log sigmoid(s) + (1-y) log sigmoid(-s)], stable through log_expit.
        return float(-np.mean(y * log_expit(s) + (1.0 - y) * log_expit(-s)))
    return float(-np.mean(log_softmax(s, axis=1)[np.arange(len(y)), y]))


@dataclass(frozen=True)
class TemperatureFit:
    temperature: float  # T > 0; logits are divided by it
    nll_before: float  # mean validation NLL at T = 1 (nats)
    nll_after: float  # mean validation NLL at the fitted T (nats), never above nll_before
    n: int  # validation predictions it was fitted on (multi-label: example x label pairs)


def fit_temperature(logits, labels, kind: str = "multiclass") -> TemperatureFit:
    """Fit T on validation logits by minimising mean NLL over log T (bounded Brent)."""
    z, y = _as_logits(logits, labels, kind)
    before = _nll(z, y, kind, 1.0)
    res = minimize_scalar(lambda log_t: _nll(z, y, kind, float(np.exp(log_t))),
                          bounds=LOG_T_BOUNDS, method="bounded",
                          options={"xatol": 1e-6, "maxiter": 200})
    t = float(np.exp(res.x))
    after = _nll(z, y, kind, t)
    if not (after <= before):  # guard: keep T = 1 when the search did not improve on it
        t, after = 1.0, before
    return TemperatureFit(temperature=t, nll_before=before, nll_after=after, n=int(y.size))


def calibration_report(val_logits, val_labels, test_logits, test_labels,
                       kind: str = "multiclass", n_bins: int = N_BINS) -> dict:
    """The ``calibration`` block of an RQ3 evaluation file for one task at one level.

    T is fitted on validation; ECE and the reliability bins are measured on test, before
    (T = 1) and after (fitted T).  Returns a JSON-ready dict (no NaN: empty bins are None).
    """
    fit = fit_temperature(val_logits, val_labels, kind)
    conf_b, corr_b = top_label(test_logits, test_labels, kind, 1.0)
    conf_a, corr_a = top_label(test_logits, test_labels, kind, fit.temperature)
    bins_b = reliability_bins(conf_b, corr_b, n_bins)
    bins_a = reliability_bins(conf_a, corr_a, n_bins)
    return {
        "kind": kind, "n_bins": n_bins,
        "temperature": fit.temperature,
        "nll_val_before": fit.nll_before, "nll_val_after": fit.nll_after,
        "n_val": fit.n, "n_test": int(conf_b.size),
        "ece_before": ece_from_bins(bins_b), "ece_after": ece_from_bins(bins_a),
        "bins_before": bins_b, "bins_after": bins_a,
    }
