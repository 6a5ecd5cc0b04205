"""stats.core.metrics and stats.core.bootstrap against direct computations (seqeval, scipy, loops)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from stats.core.bootstrap import Block, draw_counts, index_chunks, observed, resample_blocks
from stats.core.metrics import metrics_from_sums, pairs_metrics, point_metrics, sufficient_matrix
from tests.stats.synthetic import CHEMPROT_LABELS, metrics_of

CLASSES_SPEC = {"kind": "classes", "labels": CHEMPROT_LABELS, "scored": [1, 2, 3, 4, 5]}


def test_counts_formulas_and_zero_denominators():
    frame = pd.DataFrame({"tp": [3, 0, 1], "fp": [1, 0, 2], "fn": [0, 0, 1]})
    m = point_metrics("counts", {"kind": "counts"}, frame)
    assert m["f1"] == pytest.approx(2 * 4 / (2 * 4 + 3 + 1))
    assert m["precision"] == pytest.approx(4 / 7) and m["recall"] == pytest.approx(4 / 5)
    empty = metrics_from_sums("counts", {}, np.zeros(3), 0)
    assert all(float(v) == 0.0 for v in empty.values())


def test_counts_equal_seqeval():
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities

    gold = [["B", "I", "O", "B"], ["O", "O"], ["B", "O", "B", "I", "I"]]
    pred = [["B", "O", "O", "B"], ["B", "O"], ["B", "O", "B", "I", "I"]]
    rows = []
    for g, p in zip(gold, pred):
        ge, pe = set(get_entities(g)), set(get_entities(p))
        rows.append((len(ge & pe), len(pe - ge), len(ge - pe)))
    m = point_metrics("counts", {}, pd.DataFrame(rows, columns=["tp", "fp", "fn"]))
    assert m["f1"] == pytest.approx(f1_score(gold, pred), abs=1e-12)
    assert m["precision"] == pytest.approx(precision_score(gold, pred), abs=1e-12)
    assert m["recall"] == pytest.approx(recall_score(gold, pred), abs=1e-12)


def test_classes_match_independent_loops():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"gold_id": rng.integers(0, 6, 300), "pred_id": rng.integers(0, 6, 300)})
    ours = point_metrics("classes", CLASSES_SPEC, frame)
    theirs = metrics_of("chemprot", frame)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-12), name
    assert ours["f1"] == ours["micro_f1"]


def test_pairs_match_scipy_rowwise():
    rng = np.random.default_rng(4)
    gold = rng.normal(size=(5, 30))
    pred = gold + rng.normal(size=(5, 30))
    pred[:, :4] = pred[:, 4:8]  # ties for Spearman
    res = pairs_metrics(gold, pred)
    for i in range(5):
        assert res["pearson"][i] == pytest.approx(sps.pearsonr(gold[i], pred[i])[0], abs=1e-12)
        assert res["spearman"][i] == pytest.approx(sps.spearmanr(gold[i], pred[i])[0], abs=1e-12)
    assert np.isnan(pairs_metrics(np.ones(4), np.arange(4.0))["pearson"])


def test_resampled_metrics_equal_metric_on_each_resampled_set():
    """Every bootstrap value equals the metric computed directly on that resampled set."""
    rng = np.random.default_rng(5)
    n = 40
    counts = pd.DataFrame({"tp": rng.integers(0, 3, n), "fp": rng.integers(0, 2, n),
                           "fn": rng.integers(0, 2, n)})
    classes = pd.DataFrame({"gold_id": rng.integers(0, 6, n), "pred_id": rng.integers(0, 6, n)})
    pairs = pd.DataFrame({"gold_value": rng.normal(size=n), "pred_value": rng.normal(size=n)})
    blocks = [Block("counts", {}, "f1", sufficient_matrix("counts", {}, counts)),
              Block("classes", CLASSES_SPEC, "macro_f1",
                    sufficient_matrix("classes", CLASSES_SPEC, classes)),
              Block("pairs", {}, "spearman", sufficient_matrix("pairs", {}, pairs))]
    dist = resample_blocks(blocks, 30, seed=11, max_cells=7 * n)  # several chunks
    idx = np.vstack(list(index_chunks(n, 30, 11)))
    for r in range(30):
        rows = idx[r]
        assert dist[r, 0] == pytest.approx(metrics_of("bc2gm", counts.iloc[rows])["f1"], abs=1e-12)
        assert dist[r, 1] == pytest.approx(
            metrics_of("chemprot", classes.iloc[rows].reset_index(drop=True))["macro_f1"], abs=1e-12)
        assert dist[r, 2] == pytest.approx(
            sps.spearmanr(pairs["gold_value"].iloc[rows], pairs["pred_value"].iloc[rows])[0],
            abs=1e-12)
    assert observed(blocks)[0] == pytest.approx(metrics_of("bc2gm", counts)["f1"])


def test_resampling_is_seeded_and_independent_of_memory_bound():
    x = np.random.default_rng(0).integers(0, 3, size=(100, 3)).astype(float)
    blk = [Block("counts", {}, "f1", x)]
    a = resample_blocks(blk, 50, seed=7, max_cells=300)
    b = resample_blocks(blk, 50, seed=7, max_cells=10**6)
    c = resample_blocks(blk, 50, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_draw_counts_rows_sum_to_n():
    idx = np.array([[0, 0, 2], [1, 2, 2]], dtype=np.int32)
    assert draw_counts(idx).tolist() == [[2, 0, 1], [0, 1, 2]]
