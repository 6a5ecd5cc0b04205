"""Metrics: aggregates equal seqeval / scipy, and the per-unit statistics reproduce them exactly."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from runner.data.splits import load_split
from runner.data.tasks import get_task
from runner.ml.metrics import evaluate, metrics_from_stats, ner_counts

DATA = Path(__file__).resolve().parents[3] / "data"


def typed(seqs):
    return [[t if t == "O" else f"{t}-X" for t in s] for s in seqs]


def seqeval_report(golds, preds):
    """One seqeval call (classification_report, strict IOB2): its micro P/R/F1 and the entity
    counts behind them (support = gold entities; tp = recall * support; fp from precision)."""
    from seqeval.metrics import classification_report

    rep = classification_report(typed(golds), typed(preds), mode="strict", scheme=IOB2,
                                output_dict=True, zero_division=0)["micro avg"]
    n_gold = int(rep["support"])
    tp = round(rep["recall"] * n_gold)
    n_pred = round(tp / rep["precision"]) if rep["precision"] else 0
    metrics = {"f1": rep["f1-score"], "precision": rep["precision"], "recall": rep["recall"]}
    return metrics, (tp, n_pred - tp, n_gold - tp)


def assert_same_as_seqeval(got, direct):
    """precision and recall exactly; F1 to the last binary digit: seqeval computes 2PR/(P+R),
    the statistics 2tp/(2tp+fp+fn) -- equal in exact arithmetic, may differ by one ulp."""
    assert got["precision"] == direct["precision"]
    assert got["recall"] == direct["recall"]
    assert got["f1"] == pytest.approx(direct["f1"], rel=4e-16, abs=0)


def seqeval_direct(golds, preds):
    kw = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    y, p = typed(golds), typed(preds)
    return {"f1": f1_score(y, p, **kw), "precision": precision_score(y, p, **kw),
            "recall": recall_score(y, p, **kw)}


def perturb(tags_list, rng, kind):
    out = []
    for tags in tags_list:
        tags = list(tags)
        if kind == "flip":       # random tag noise, incl. invalid I-after-O starts
            tags = [t if rng.random() > 0.08 else rng.choice("OBI") for t in tags]
        elif kind == "shift":    # boundary errors: move every entity one word right
            tags = ["O"] + tags[:-1]
        elif kind == "drop":     # misses: drop every second entity start
            tags = ["O" if t == "B" and rng.random() < 0.5 else t for t in tags]
        out.append(tags)
    return out


@pytest.mark.parametrize("task,kind", [("bc2gm", "flip"), ("bc2gm", "shift"),
                                       ("jnlpba", "drop"), ("jnlpba", "flip")])
def test_ner_stats_reproduce_seqeval_exactly_on_real_test_sets(task, kind):
    spec = get_task(task)
    df = load_split(DATA, task, "test")
    preds = perturb(df["tags"], random.Random(7), kind)
    metrics, frame = evaluate(spec, df, preds)
    direct, counts = seqeval_report(list(df["tags"]), preds)
    lenient = metrics.pop("f1_lenient")
    assert metrics == direct                       # the aggregate is seqeval's
    # the secondary F1 is seqeval's default (lenient) mode, called directly
    assert lenient == f1_score(typed(df["tags"]), typed(preds))
    # the per-sentence statistics sum to seqeval's own entity counts, exactly
    assert tuple(int(frame[c].sum()) for c in ("tp", "fp", "fn")) == counts
    assert_same_as_seqeval(metrics_from_stats(spec, frame), direct)
    assert 0 < metrics["f1"] < 1
    assert list(frame.columns) == ["unit_id", "gold", "pred", "tp", "fp", "fn"]
    assert frame["tp"].dtype == np.int64 and frame["unit_id"].tolist() == df["id"].tolist()
    assert json.loads(frame["pred"][0]) == preds[0]


def test_ner_stats_of_a_bootstrap_resample_reproduce_seqeval():
    spec = get_task("bc2gm")
    df = load_split(DATA, "bc2gm", "test")
    preds = perturb(df["tags"], random.Random(3), "flip")
    _, frame = evaluate(spec, df, preds)
    idx = np.random.default_rng(3).integers(0, len(df), len(df))
    # seqeval on the drawn sentences (duplicates are separate sentences, as in a resample)
    direct, counts = seqeval_report([df["tags"][i] for i in idx], [preds[i] for i in idx])
    resampled = frame.iloc[idx]
    assert tuple(int(resampled[c].sum()) for c in ("tp", "fp", "fn")) == counts
    assert_same_as_seqeval(metrics_from_stats(spec, resampled), direct)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("OBI"), st.sampled_from("OBI")), min_size=1,
                max_size=12))
def test_per_sentence_counts_match_seqeval_strict(pairs):
    gold = [g for g, _ in pairs]
    pred = [p for _, p in pairs]
    tp, fp, fn = ner_counts(gold, pred)
    direct = seqeval_direct([gold], [pred])
    expected = {"f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
                "precision": tp / (tp + fp) if tp + fp else 0.0,
                "recall": tp / (tp + fn) if tp + fn else 0.0}
    assert_same_as_seqeval(expected, direct)


def test_lenient_f1_counts_an_i_without_b_and_strict_does_not():
    spec = get_task("bc2gm")
    df = pd.DataFrame({"id": ["s1", "s2"], "tokens": [["a", "b", "c"], ["d", "e"]],
                       "tags": [["O", "B", "I"], ["B", "O"]]})
    metrics, _ = evaluate(spec, df, [["O", "I", "I"], ["B", "O"]])
    # strict: the "I I" run is no entity -> tp 1, fp 0, fn 1; lenient: it is the gold entity
    assert metrics["f1"] == pytest.approx(2 / 3) and metrics["f1_lenient"] == 1.0
    assert list(metrics)[:3] == list(spec.metrics) and "f1_lenient" not in spec.metrics


def test_strict_mode_ignores_an_i_without_b():
    # strict IOB2: "I I" after "O" is no entity (the lenient default would count one)
    assert ner_counts(["O", "B", "I"], ["O", "I", "I"]) == (0, 0, 1)
    assert ner_counts(["B", "I", "O", "B"], ["B", "I", "O", "B"]) == (2, 0, 0)
    assert ner_counts(["B", "B"], ["B", "I"]) == (0, 1, 2)


def _sklearn():
    return pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("task", ["chemprot", "ddi", "gad", "pubmedqa"])
def test_class_stats_reproduce_the_direct_metrics(task):
    spec = get_task(task)
    df = load_split(DATA, task, "test")
    rng = random.Random(11)
    preds = [g if rng.random() < 0.7 else rng.choice(spec.labels) for g in df["label"]]
    metrics, frame = evaluate(spec, df, preds)
    assert set(metrics) == set(spec.metrics)
    recomputed = metrics_from_stats(spec, frame)
    assert {k: recomputed[k] for k in metrics} == metrics
    assert list(frame.columns) == ["unit_id", "gold", "pred", "gold_id", "pred_id"]
    assert [spec.labels[i] for i in frame["pred_id"]] == preds
    skm = _sklearn()
    scored = list(spec.scored)
    assert metrics[spec.metrics[0]] == pytest.approx(
        {"macro_f1": skm.f1_score(df["label"], preds, labels=scored, average="macro"),
         "f1": skm.f1_score(df["label"], preds, pos_label="1") if task == "gad" else None,
         "accuracy": skm.accuracy_score(df["label"], preds)}[spec.metrics[0]], abs=1e-12)
    if "micro_f1" in metrics:
        assert metrics["micro_f1"] == pytest.approx(
            skm.f1_score(df["label"], preds, labels=scored, average="micro"), abs=1e-12)
    for c in scored:
        if f"f1_{c}" in metrics:
            assert metrics[f"f1_{c}"] == pytest.approx(
                skm.f1_score(df["label"], preds, labels=[c], average="micro"), abs=1e-12)


def test_hoc_is_scored_per_abstract_by_union():
    spec = get_task("hoc")
    a, b = spec.labels[0], spec.labels[1]
    df = pd.DataFrame({"id": ["1_0", "1_1", "2_0"], "document_id": ["1", "1", "2"],
                       "text": ["x", "y", "z"], "labels": [[a], [], [b]]})
    preds = [[], [a, b], []]
    metrics, frame = evaluate(spec, df, preds)
    # abstract 1: gold {a}, pred {a,b} -> tp 1, fp 1; abstract 2: gold {b}, pred {} -> fn 1
    assert frame[["unit_id", "tp", "fp", "fn"]].values.tolist() == [["1", 1, 1, 0],
                                                                     ["2", 0, 0, 1]]
    assert metrics["micro_f1"] == 2 * 1 / (2 * 1 + 1 + 1)
    # per sentence: 1_0 fn a; 1_1 fp a, fp b; 2_0 fn b -> tp 0
    assert metrics["sentence_micro_f1"] == 0.0
    assert metrics_from_stats(spec, frame)["micro_f1"] == metrics["micro_f1"]
    # accuracy: abstracts whose predicted set is exactly the gold set (neither is here)
    assert metrics["accuracy"] == 0.0
    exact, _ = evaluate(spec, df, [[a], [], []])
    assert exact["accuracy"] == 0.5  # abstract 1 exact, abstract 2 misses b


def test_hoc_real_test_set_stats_match_sklearn_per_abstract():
    spec = get_task("hoc")
    df = load_split(DATA, "hoc", "test")
    rng = random.Random(5)
    preds = [[x for x in spec.labels if (x in g) != (rng.random() < 0.05)] for g in df["labels"]]
    metrics, frame = evaluate(spec, df, preds)
    assert len(frame) == df["document_id"].nunique()
    assert metrics_from_stats(spec, frame)["micro_f1"] == metrics["micro_f1"]
    skm = _sklearn()
    docs = list(dict.fromkeys(df["document_id"]))
    def hot(sets):
        return np.array([[x in s for x in spec.labels] for s in sets], dtype=int)
    gold = {d: set() for d in docs}
    pred = {d: set() for d in docs}
    for d, g, p in zip(df["document_id"], df["labels"], preds):
        gold[d] |= set(g)
        pred[d] |= set(p)
    expected = skm.f1_score(hot([gold[d] for d in docs]), hot([pred[d] for d in docs]),
                            average="micro")
    assert metrics["micro_f1"] == pytest.approx(expected, abs=1e-12)
    sentence = skm.f1_score(hot(map(set, df["labels"])), hot(map(set, preds)), average="micro")
    assert metrics["sentence_micro_f1"] == pytest.approx(sentence, abs=1e-12)
    # the methodology's secondary accuracy: sklearn's subset accuracy per abstract
    subset = skm.accuracy_score(hot([gold[d] for d in docs]), hot([pred[d] for d in docs]))
    assert metrics["accuracy"] == pytest.approx(subset, abs=1e-12) and 0 < subset < 1


def test_regression_pairs_match_scipy_exactly():
    spec = get_task("biosses")
    df = load_split(DATA, "biosses", "test")
    rng = np.random.default_rng(2)
    preds = (df["label"].to_numpy() + rng.normal(0, 1, len(df))).tolist()
    metrics, frame = evaluate(spec, df, preds)
    assert metrics == {"pearson": float(sps.pearsonr(df["label"], preds)[0]),
                       "spearman": float(sps.spearmanr(df["label"], preds)[0])}
    assert metrics_from_stats(spec, frame) == metrics
    assert frame["gold_value"].dtype == np.float64
    constant, _ = evaluate(spec, df, [2.0] * len(df))
    assert constant == {"pearson": 0.0, "spearman": 0.0}


def test_predictions_that_do_not_fit_are_refused():
    spec = get_task("gad")
    df = load_split(DATA, "gad", "test")
    with pytest.raises(ValueError, match="predictions for"):
        evaluate(spec, df, ["1"])
    with pytest.raises(ValueError, match="not in"):
        evaluate(spec, df, ["yes"] * len(df))
    ner = get_task("bc2gm")
    ndf = load_split(DATA, "bc2gm", "validation").head(2)
    with pytest.raises(ValueError, match="predicted tags"):
        evaluate(ner, ndf, [["O"], ["O"]])
