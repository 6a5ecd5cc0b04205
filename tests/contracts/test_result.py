"""Contract: a job's ``result.json`` and ``predictions/<task>.parquet`` as the runner writes them
(a tiny multi-task job of the training engine, stamped and written as the executor does) are
what stats.read.results reads, with every field results/README.md documents.

One tiny BERT job over three tasks covers the three ``stat_spec`` kinds (counts, classes,
pairs); stats then recomputes each task's metrics from the predictions file's rows, which
must give the numbers result.json holds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from mtl_contract.files import atomic_write_json, sha256_file
from mtl_contract.schema import MT, PREDICTION_COLUMNS, RESULT_FILE, STRATEGY_OF_TYPE
from runner.orchestrate.attempt import stamp_result  # the executor's last step before writing
from runner.recipes import train_job as engine_job  # builds result.json (run_job)
from tests.contracts.readme_schema import (
    children,
    documented_keys,
    jsonc_block,
    prediction_columns,
)
from tests.runner import jobs

TASKS = ("tiny_ner", "tiny_cls", "tiny_reg")
# README marks these "token-controlled jobs only"; a multi-task job has neither
TOKEN_CONTROLLED_ONLY = {"parity"}
TOKEN_CONTROLLED_ONLY_PER_TASK = {"best_weights"}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(the result.json the executor wrote, its job folder) of one tiny multi-task job: the
    tiny BERT and synthetic tasks of tests/runner/jobs.py, trained once for this module."""
    import torch

    from runner.jobapi import JobContext

    root = tmp_path_factory.mktemp("contract_result")
    model_path = jobs.build_tiny_model(root / "tiny_bert")
    jobs.write_data(root / "data")
    job = jobs.make_job(model_path, tasks=TASKS, strategy="multi_task", max_epochs=1,
                        patience=100, eval_every=10)
    job_dir = root / "results" / job.job_id
    job_dir.mkdir(parents=True)
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_job, "get_task", lambda name: jobs.SPECS[name])
        patch.setattr(engine_job, "load_split", lambda d, task, split: pd.read_parquet(
            Path(d) / task / f"{split}.parquet"))
        patch.setattr(engine_job, "evaluate", jobs.EVALUATE)
        torch.set_num_threads(1)
        try:
            result = engine_job.run_job(job, JobContext(job_dir=job_dir, data_dir=root / "data"))
        finally:
            torch.set_num_threads(threads)
    atomic_write_json(job_dir / RESULT_FILE, stamp_result(job.job_id, result, job_dir))
    return json.loads((job_dir / RESULT_FILE).read_text()), job_dir


def test_result_json_has_every_documented_field_and_stats_reads_them_back(written):
    from stats.read.results import load_results

    doc, job_dir = written
    documented = documented_keys(jsonc_block("## `result.json`"))
    assert TOKEN_CONTROLLED_ONLY <= children(documented)
    assert children(documented) - TOKEN_CONTROLLED_ONLY <= set(doc)
    per_task_keys = children(documented, "per_task", "bc2gm")
    assert TOKEN_CONTROLLED_ONLY_PER_TASK <= per_task_keys
    for task in TASKS:
        assert per_task_keys - TOKEN_CONTROLLED_ONLY_PER_TASK <= set(doc["per_task"][task])
    assert children(documented, "provenance") <= set(doc["provenance"])
    assert children(documented, "per_task", "bc2gm", "truncation") <= set(
        doc["per_task"]["tiny_ner"]["truncation"])

    loaded = load_results([job_dir.parent])
    assert loaded.skipped == [] and loaded.refused == [] and loaded.not_run == []
    (job,) = loaded.jobs
    assert job.path == job_dir / RESULT_FILE
    assert (job.job_id, job.experiment_type, job.seed, job.tasks) == (
        doc["experiment_id"], doc["experiment_type"], doc["seed"], tuple(doc["tasks"]))
    assert job.strategy == STRATEGY_OF_TYPE[doc["experiment_type"]] == MT
    assert (job.experiment, job.study, job.model, job.model_name, job.tokenizer) == (
        doc["experiment"], doc["study"], doc["model"], doc["model_name"], doc["tokenizer"])
    assert (job.token_count, job.tokens_per_task) == (doc["token_count"],
                                                      doc["tokens_per_task"])
    assert (job.tokens_at_best, job.tokens_per_task_at_best) == (
        doc["tokens_at_best"], doc["tokens_per_task_at_best"])
    assert job.config == doc["config"] and job.train_results == doc["train_results"]
    assert job.dataset_stats == doc["dataset_stats"]
    assert job.validation_history == doc["validation_history"]
    assert job.data_checksums == doc["provenance"]["data_checksums"] != {}
    for task in TASKS:
        entry, read = doc["per_task"][task], job.per_task[task]
        assert read.primary_metric == entry["primary_metric"]
        # stats keeps the finite metrics (null: undefined, e.g. Pearson of a constant)
        assert read.metrics == {k: v for k, v in entry["metrics"].items() if v is not None}
        assert (read.tokens, read.n_test, read.stat_spec) == (
            entry["tokens"], entry["n_test"], entry["stat_spec"])
        assert read.predictions_path == job_dir / entry["predictions"]
        assert read.predictions_sha256 == entry["predictions_sha256"] == sha256_file(
            job_dir / entry["predictions"])


def test_predictions_files_have_the_documented_columns_and_reproduce_the_metrics(written):
    from stats.core.metrics import point_metrics
    from stats.read.results import load_results, read_predictions

    doc, job_dir = written
    documented = prediction_columns()
    assert {kind: tuple(cols) for kind, cols in documented.items()} == PREDICTION_COLUMNS
    (job,) = load_results([job_dir.parent]).jobs
    kinds = set()
    for task in TASKS:
        entry = doc["per_task"][task]
        kind = entry["stat_spec"]["kind"]
        kinds.add(kind)
        raw = pd.read_parquet(job_dir / entry["predictions"])
        assert {"unit_id", "gold", "pred"} <= set(raw.columns)
        assert raw["unit_id"].map(type).eq(str).all() and raw["unit_id"].is_unique
        for column in ("gold", "pred"):   # JSON strings, for people
            raw[column].map(json.loads)
        assert {c: str(raw[c].dtype) for c in documented[kind]} == documented[kind]
        assert len(raw) == entry["n_test"]

        read_kind, spec, frame = read_predictions(job.per_task[task])
        assert (read_kind, spec) == (kind, entry["stat_spec"])
        assert list(frame.index) == list(raw["unit_id"])
        recomputed = point_metrics(kind, spec, frame)
        stored = {k: v for k, v in entry["metrics"].items() if k in recomputed}
        assert entry["primary_metric"] in stored
        for name, value in stored.items():
            if value is None:   # undefined in the runner: undefined recomputed too
                assert math.isnan(recomputed[name]), (task, name)
            else:
                assert recomputed[name] == pytest.approx(value, abs=1e-6), (task, name)
    assert kinds == set(PREDICTION_COLUMNS)


def test_the_job_folder_layout_is_the_documented_one(written):
    doc, job_dir = written
    for task in TASKS:
        assert doc["per_task"][task]["predictions"] == f"predictions/{task}.parquet"
    assert job_dir.name == doc["experiment_id"] and Path(job_dir / RESULT_FILE).is_file()
