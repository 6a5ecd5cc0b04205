"""RQ2 on a synthetic results folder with a known held-out advantage."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from stats.questions import rq2
from tests.stats.sections import build

N_UNITS = 400


def write_job(root, job_id, *, strategy, experiment, tasks, seed, trainable, adapter=True,
              matched_to=None, model="minilm", scores=None, encoder_trainable=None):
    etype = {"single_task": "single_task_baseline", "multi_task": "multi_task"}[strategy]
    d = root / job_id
    d.mkdir(parents=True)
    ad = None
    if adapter:
        ad = {"method": "lora", "r": 8, "alpha": 16.0, "dropout": 0.1,
              "target_modules": ["query", "value"]}
        if matched_to:
            ad["matched_to"] = {"experiment": matched_to, "relative_gap": 0.01}
    res = {"experiment_id": job_id, "experiment_type": etype, "experiment": experiment,
           "study": "s", "model": model, "seed": seed, "tasks": tasks,
           "config": {"adapter": ad}, "model_params": {"total": 23_000_000, "trainable": trainable},
           "token_count": 1000,
           "per_task": {t: {"primary_metric": "f1", "metrics": {"f1": (scores or {}).get(t, 0.5)}}
                        for t in tasks}}
    if encoder_trainable is not None:
        res["model_params"]["encoder_trainable"] = encoder_trainable
    (d / "result.json").write_text(json.dumps(res))
    return d


def write_heldout(job_dir, job_id, task, seed, tp_rate, jitter=0.0):
    """Units: one gold entity each; tp with probability tp_rate + jitter (fixed pattern),
    else fn + fp. ``jitter``: this run's seed-to-seed deviation of quality."""
    d = job_dir / "heldout" / task / f"seed{seed}"
    (d / "predictions").mkdir(parents=True)
    n_tp = round((tp_rate + jitter) * N_UNITS)
    # which units are right depends on the seed a little, so the seeds differ
    order = np.random.default_rng(seed).permutation(N_UNITS)
    tp = np.zeros(N_UNITS, dtype=np.int64)
    tp[order[:n_tp]] = 1
    frame = pd.DataFrame({"unit_id": [f"u{i:04d}" for i in range(N_UNITS)],
                          "gold": "[]", "pred": "[]", "tp": tp, "fp": 1 - tp, "fn": 1 - tp})
    frame.to_parquet(d / "predictions" / f"{task}.parquet")
    f1 = 2 * n_tp / (2 * n_tp + 2 * (N_UNITS - n_tp))
    doc = {"schema": "heldout/1", "source_job_id": job_id, "task": task, "seed": seed,
           "train_mode": "head", "adapter": None,
           "model_params": {"total": 23_000_000, "trainable": 1000},
           "budget": {"max_steps": 50, "steps": 50, "examples": 800, "tokens": 20000},
           "per_task": {task: {"primary_metric": "f1",
                               "metrics": {"f1": f1, "precision": f1, "recall": f1},
                               "n_test": N_UNITS, "stat_spec": {"kind": "counts"},
                               "predictions": f"predictions/{task}.parquet"}}}
    (d / "heldout.json").write_text(json.dumps(doc))
    return f1


@pytest.fixture
def study(tmp_path):
    root = tmp_path / "results" / "s"
    truth = {}
    # every run's quality deviates a little from its system's (seed-to-seed variation): the
    # test over source seeds needs it
    jitter = iter(np.random.default_rng(5).normal(0, 0.01, size=100))
    for seed in (1, 2, 3):
        mt = write_job(root, f"mt{seed}", strategy="multi_task", experiment="mt_adapter",
                       tasks=["bc2gm", "jnlpba"], seed=seed, trainable=300_000)
        st = write_job(root, f"st{seed}", strategy="single_task", experiment="st_matched",
                       tasks=["bc2gm"], seed=seed, trainable=297_000, matched_to="mt_adapter")
        # full fine-tuning job without an adapter: not part of RQ2
        nf = write_job(root, f"ft{seed}", strategy="single_task", experiment="st_full",
                       tasks=["bc2gm"], seed=seed, trainable=23_000_000, adapter=False)
        write_heldout(nf, f"ft{seed}", "ncbi_disease", 1, 0.99)
        for ho in (1, 2):
            truth.setdefault("mt", []).append(
                write_heldout(mt, f"mt{seed}", "ncbi_disease", ho, 0.80, next(jitter)))
            truth.setdefault("st", []).append(
                write_heldout(st, f"st{seed}", "ncbi_disease", ho, 0.70, next(jitter)))
            # s800: the same quality on both sides (no difference in truth)
            write_heldout(mt, f"mt{seed}", "s800", ho, 0.6, next(jitter))
            write_heldout(st, f"st{seed}", "s800", ho, 0.6, next(jitter))
        write_heldout(mt, f"mt{seed}", "linnaeus", 1, 0.5)  # only MT ran linnaeus
    # a malformed held-out file is skipped with its path, never a crash
    bad = root / "mt1" / "heldout" / "bc5cdr_chem" / "seed1"
    bad.mkdir(parents=True)
    (bad / "heldout.json").write_text('{"schema": "heldout/1", "source_job_id": "mt1"}')
    return tmp_path / "results", truth


def test_known_advantage_found(study, tmp_path):
    results, truth = study
    out = build("rq2", [results], tmp_path / "paper", seed=7, resamples=2000)
    assert out["reason"] is None
    rows = {r["task"]: r for r in out["rows"]}
    assert set(rows) == {"ncbi_disease", "s800", "linnaeus"}
    ncbi = rows["ncbi_disease"]
    want = np.mean(truth["mt"]) - np.mean(truth["st"])  # 0.80 - 0.70 in F1 terms
    assert want == pytest.approx(0.10, abs=0.02)
    assert ncbi["n"] == 6  # 3 source seeds x 2 held-out seeds
    # the test is over the 3 source seeds, each side averaged over its 2 head seeds
    assert ncbi["source_seeds"] == [1, 2, 3] and ncbi["paired_t"]["n"] == 3
    pairs = np.reshape(truth["mt"], (3, 2)).mean(1) - np.reshape(truth["st"], (3, 2)).mean(1)
    assert ncbi["mean_diff"] == pytest.approx(pairs.mean())
    assert ncbi["paired_t"]["p"] == pytest.approx(sps.ttest_1samp(pairs, 0).pvalue)
    assert ncbi["diff_interval"]["low"] > 0 and ncbi["significant"] is True
    assert ncbi["bootstrap"]["delta"] == pytest.approx(want)  # secondary: test units
    assert ncbi["bootstrap"]["low"] < want < ncbi["bootstrap"]["high"]
    assert ncbi["bootstrap"]["n_units"] == N_UNITS
    assert ncbi["param_relative_gap"] == pytest.approx(3000 / 300_000)
    assert ncbi["param_matched_to_mt"] is True
    s800 = rows["s800"]
    assert abs(s800["mean_diff"]) < 0.02 and s800["significant"] is False
    assert rows["linnaeus"]["n"] == 0 and "single-task" in rows["linnaeus"]["reason"]
    assert ncbi["holm_family_size"] == 2  # every RQ2 comparison with a test
    for r in (ncbi, s800):  # the printed interval agrees with its unadjusted p (issue 24)
        ci = r["diff_interval"]
        assert (ci["low"] > 0 or ci["high"] < 0) == (r["paired_t"]["p"] < 0.05)
    assert any("bc5cdr_chem" in s["path"] for s in out["skipped"])
    tex = (tmp_path / "paper" / "table_rq2_heldout.tex").read_text()
    assert r"\toprule" in tex and r"ncbi\_disease" in tex
    assert f"{100 * ncbi['mean_diff']:+.1f}$^{{*}}$" in tex and "3 (6)" in tex
    assert "nan" not in tex.lower()
    # same seed -> same interval
    again = build("rq2", [results], tmp_path / "paper2", seed=7, resamples=2000)
    assert again["rows"][0]["bootstrap"] == out["rows"][0]["bootstrap"]


def test_unequal_heldout_budgets_are_flagged(study, tmp_path):
    """Held-out results from before [heldout] batch_size: single-task sources' heads saw twice
    the examples.  The row says so, the summary warns, the table marks the cell."""
    results, _ = study
    for path in results.glob("s/st*/heldout/ncbi_disease/seed*/heldout.json"):
        doc = json.loads(path.read_text())
        doc["budget"]["examples"] *= 2
        path.write_text(json.dumps(doc))
    out = build("rq2", [results], tmp_path / "paper", seed=7, resamples=500)
    rows = {r["task"]: r for r in out["rows"]}
    assert "unequal held-out budgets" in rows["ncbi_disease"]["budget_note"]
    assert "[800]" in rows["ncbi_disease"]["budget_note"]
    assert "[1600]" in rows["ncbi_disease"]["budget_note"]
    assert rows["s800"]["budget_note"] is None
    lines = rq2.summary_lines(out["rows"], None)
    assert sum("WARNING: unequal held-out budgets" in ln for ln in lines) == 1
    tex = (tmp_path / "paper" / "table_rq2_heldout.tex").read_text()
    assert r"$^{\dagger}$" in tex and "not a like-for-like comparison" in tex
    # files that record the batch size are compared on (max_steps, batch_size): the example
    # counts may differ by a partial batch without the budget differing
    for path in results.glob("s/*/heldout/*/seed*/heldout.json"):
        doc = json.loads(path.read_text())
        if "budget" not in doc:
            continue   # the fixture's malformed file
        side = path.parts[-5]
        doc["budget"]["batch_size"] = 8 if side.startswith("mt") else 16
        doc["budget"]["examples"] = 800 + (side == "st1")
        path.write_text(json.dumps(doc))
    out = build("rq2", [results], tmp_path / "paper2", seed=7, resamples=500)
    rows = {r["task"]: r for r in out["rows"]}
    assert "['50 steps x 8'] (steps x batch)" in rows["ncbi_disease"]["budget_note"]
    assert "['50 steps x 16']" in rows["ncbi_disease"]["budget_note"]
    for path in results.glob("s/st*/heldout/*/seed*/heldout.json"):
        doc = json.loads(path.read_text())
        doc["budget"]["batch_size"] = 8
        path.write_text(json.dumps(doc))
    out = build("rq2", [results], tmp_path / "paper3", seed=7, resamples=500)
    assert all(r.get("budget_note") is None for r in out["rows"])


def test_no_heldout_is_na(tmp_path):
    root = tmp_path / "r"
    write_job(root, "a1", strategy="multi_task", experiment="mt", tasks=["bc2gm", "gad"],
              seed=1, trainable=10)
    out = build("rq2", [root], tmp_path / "p")
    assert out["rows"] == [] and "no held-out" in out["reason"]


def test_only_one_side_is_na_row(tmp_path):
    root = tmp_path / "r"
    d = write_job(root, "a1", strategy="multi_task", experiment="mt", tasks=["bc2gm", "gad"],
                  seed=1, trainable=10)
    write_heldout(d, "a1", "s800", 1, 0.5)
    out = build("rq2", [root], tmp_path / "p")
    assert len(out["rows"]) == 1 and out["rows"][0]["task"] is None
    assert "single-task" in out["rows"][0]["reason"]
    assert "n/a" in (tmp_path / "p" / "table_rq2_heldout.tex").read_text()


def write_adapter_pair(root, seed: int):
    """One seed of a shared-adapter multi-task job and its parameter-matched single-task job,
    each with held-out ncbi_disease results at two head seeds (MT 0.80, ST 0.70); returns the
    two job folders."""
    mt = write_job(root, f"mt{seed}", strategy="multi_task", experiment="mt_adapter",
                   tasks=["bc2gm", "jnlpba"], seed=seed, trainable=300_000)
    st = write_job(root, f"st{seed}", strategy="single_task", experiment="st_matched",
                   tasks=["bc2gm"], seed=seed, trainable=297_000, matched_to="mt_adapter")
    for ho in (1, 2):
        # a little seed-to-seed variation (fixed), so the test over source seeds has some
        write_heldout(mt, f"mt{seed}", "ncbi_disease", ho, 0.80, 0.005 * ((3 * seed + ho) % 4))
        write_heldout(st, f"st{seed}", "ncbi_disease", ho, 0.70, 0.005 * ((5 * seed + ho) % 3))
    return mt, st



def test_the_parameter_gap_is_on_the_encoder_side_and_the_table_says_so(tmp_path):
    """Issue 23: the held-out evaluation keeps the encoder's LoRA only, so the gap compares
    encoder-side counts where both sides recorded them (heads counted alongside); a side
    without them falls back to the counts with heads, marked in the table."""
    def run(name, encoder):
        root = tmp_path / name / "s"
        for seed in (1, 2):
            mt = write_job(root, f"mt{seed}", strategy="multi_task", experiment="mt_adapter",
                           tasks=["bc2gm", "jnlpba"], seed=seed, trainable=300_000,
                           encoder_trainable=147_456 if encoder else None)
            st = write_job(root, f"st{seed}", strategy="single_task", experiment="st_matched",
                           tasks=["bc2gm"], seed=seed, trainable=148_611,
                           matched_to="mt_adapter", encoder_trainable=147_456 if encoder
                           else None)
            for ho in (1, 2):
                write_heldout(mt, f"mt{seed}", "ncbi_disease", ho, 0.8)
                write_heldout(st, f"st{seed}", "ncbi_disease", ho, 0.7)
        out = build("rq2", [tmp_path / name], tmp_path / f"paper_{name}", seed=7,
                    resamples=200)
        row = next(r for r in out["rows"] if r.get("task") == "ncbi_disease")
        return row, (tmp_path / f"paper_{name}" / "table_rq2_heldout.tex").read_text()

    row, tex = run("new", encoder=True)
    assert row["param_basis"] == "encoder" and row["param_relative_gap"] == 0
    assert (row["mt_trainable"], row["st_trainable"]) == (147_456, 147_456)
    assert (row["mt_trainable_with_heads"], row["st_trainable_with_heads"]) == (300_000, 148_611)
    assert "encoders" in tex and "$^{h}$" not in tex
    # results from before issue 23 (no encoder-side count): all trainable, marked
    row, tex = run("old", encoder=False)
    assert row["param_basis"] == "with heads" and row["mt_trainable"] == 300_000
    assert row["param_relative_gap"] == pytest.approx(151_389 / 300_000)
    assert "$^{h}$" in tex
