"""Issue 28 on the tiny BERT (tests/runner/jobs.py): a token-controlled job whose target is
out of reach is recorded as not run (``unreachable_parity = "skip"``) or trained to its cap
("run"); ``max_validation_examples`` validates on a fixed subset and tests on the whole set."""

from __future__ import annotations

import json

import pytest

from runner.recipes import train_job as engine_job
from tests.runner import jobs
from tests.runner.jobs import make_job
from tests.runner.recipes.test_train_job import tiny_tokens_per_epoch

tiny_model, env = jobs.tiny_model, jobs.env   # the shared fixtures
REF = "f00dfeedbeef"


def test_skip_records_an_unreachable_job_as_not_run_with_the_epochs_it_needs(env):
    model_path, data_dir, ctx = env
    job = make_job(model_path, strategy="token_controlled", depends_on=(REF,), parity="total",
                   eval_every=50, token_controlled_max_epochs=3, unreachable_parity="skip")
    c = ctx(dependency_results={REF: {"token_count": 10**6}})
    result = engine_job.run_job(job, c)
    json.dumps(result, allow_nan=False)
    per_epoch = tiny_tokens_per_epoch(model_path, data_dir)
    s = result["skipped"]
    assert s["reason"] == "parity_unreachable" and s["epoch_cap"] == 3
    assert s["epochs_needed"] == pytest.approx(10**6 / per_epoch, abs=1e-3)
    assert s["tokens_per_epoch"] == per_epoch and s["target_tokens"] == 10**6
    assert "needs" in s["detail"] and REF in s["detail"]
    p = result["parity"]
    assert p["reached"] is False and p["stopped_because"] == "parity_unreachable"
    assert p["reference_job"] == REF and result["token_count"] == 0
    assert result["experiment_type"] == "token_controlled_baseline"
    assert result["per_task"] == {} and "test_results" not in result
    assert not (c.job_dir / "checkpoints").exists()   # nothing was trained


def test_skip_runs_a_job_whose_target_is_within_its_cap(env):
    model_path, data_dir, ctx = env
    per_epoch = tiny_tokens_per_epoch(model_path, data_dir)
    job = make_job(model_path, strategy="token_controlled", depends_on=(REF,), parity="total",
                   eval_every=50, token_controlled_max_epochs=3, unreachable_parity="skip")
    result = engine_job.run_job(job, ctx(dependency_results={REF: {
        "token_count": 2 * per_epoch}}))
    assert "skipped" not in result
    assert result["parity"]["reached"] is True
    assert result["token_count"] >= 2 * per_epoch - 24


def test_run_trains_an_unreachable_job_to_its_cap_as_before(env):
    model_path, data_dir, ctx = env
    job = make_job(model_path, strategy="token_controlled", depends_on=(REF,), parity="total",
                   eval_every=50, token_controlled_max_epochs=2, unreachable_parity="run")
    result = engine_job.run_job(job, ctx(dependency_results={REF: {"token_count": 10**6}}))
    assert "skipped" not in result
    assert result["parity"]["stopped_because"] == "epoch_cap"
    assert result["token_count"] == 2 * tiny_tokens_per_epoch(model_path, data_dir)


def test_validation_subset_validates_on_fewer_examples_and_tests_on_all(env):
    model_path, _, ctx = env
    whole = engine_job.run_job(make_job(model_path, max_epochs=1, eval_every=5), ctx("whole"))
    sub = engine_job.run_job(make_job(model_path, max_epochs=1, eval_every=5,
                                      max_validation_examples={"tiny_ner": 6}), ctx("sub"))
    ds, dw = sub["dataset_stats"]["tiny_ner"], whole["dataset_stats"]["tiny_ner"]
    assert dw["val_samples"] == 16 and ds["val_samples"] == 6
    assert ds["test_samples"] == dw["test_samples"] == 16
    assert sub["per_task"]["tiny_ner"]["n_test"] == whole["per_task"]["tiny_ner"]["n_test"]
    # training is the same run: the validation split only chooses and stops
    assert sub["validation_history"][0]["tokens"] == whole["validation_history"][0]["tokens"]
