"""max_validation_examples' subset (issue 28): fixed, stratified, independent of any job."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from runner.data.splits import validation_subset, validation_subset_positions


def _classification(n=1000, seed=3):
    rng = np.random.default_rng(seed)
    labels = rng.choice(["false", "CPR:3", "CPR:4", "CPR:9"], size=n, p=[0.8, 0.05, 0.1, 0.05])
    return pd.DataFrame({"id": [str(i) for i in range(n)], "text": "x", "label": labels})


def test_strata_keep_their_shares_and_the_rows_keep_file_order():
    df = _classification()
    sub = validation_subset("classification", df, 200)
    assert len(sub) == 200
    full = df["label"].value_counts(normalize=True)
    got = sub["label"].value_counts(normalize=True)
    for label, share in full.items():
        assert abs(got[label] - share) <= 1 / 200 + 1e-12   # largest remainder: within 1 row
    assert list(sub["id"].astype(int)) == sorted(sub["id"].astype(int))


def test_the_same_rows_every_time_and_other_draws_differ():
    df = _classification()
    a = validation_subset_positions("classification", df, 150)
    assert a == validation_subset_positions("classification", df.copy(), 150)
    assert a != validation_subset_positions("classification", df, 150, seed=1)


def test_no_cap_or_a_cap_above_the_split_keeps_every_row():
    df = _classification(50)
    assert validation_subset_positions("classification", df, None) == list(range(50))
    assert validation_subset_positions("classification", df, 50) == list(range(50))


@pytest.mark.parametrize("kind,frame", [
    ("ner", pd.DataFrame({"tokens": [["a"]] * 40,
                          "tags": [["O"]] * 30 + [["B-GENE", "I-GENE", "B-GENE"]] * 10})),
    ("multilabel", pd.DataFrame({"text": "x", "labels": [[]] * 30 + [["a", "b"]] * 10})),
    ("regression", pd.DataFrame({"text_1": "x", "label": np.linspace(0, 4, 40)})),
])
def test_every_task_kind_is_stratified(kind, frame):
    pos = validation_subset_positions(kind, frame, 20)
    assert len(pos) == 20 == len(set(pos))
    if kind == "ner":      # 30 rows without entities, 10 with two: 15 and 5
        assert sum(p >= 30 for p in pos) == 5
    if kind == "multilabel":
        assert sum(p >= 30 for p in pos) == 5
    if kind == "regression":   # 5 rows from each quartile of the score
        assert [sum(q * 10 <= p < (q + 1) * 10 for p in pos) for q in range(4)] == [5] * 4
