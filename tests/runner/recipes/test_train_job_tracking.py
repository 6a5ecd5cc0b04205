"""Experiment tracking through the real engine (issue 16): a tiny-BERT job tracked in
TensorBoard, MLflow and W&B (offline), killed with SIGKILL after a checkpoint and resumed,
read back from each backend's own files: one value per optimizer step, none twice, the
final test metrics and the tags there.  And a backend that is not installed: one warning,
the job finishes."""

from __future__ import annotations

import builtins
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from runner.jobapi import JobContext
from runner.recipes import train_job as engine_job
from tests.runner.jobs import (  # noqa: F401
    env,
    kill_after_first_checkpoint,
    make_job,
    patch_data_side,
    tiny_model,
)

REPO = Path(__file__).resolve().parents[3]
BACKENDS = ("tensorboard", "mlflow", "wandb")
pytestmark = pytest.mark.slow


def child_main(model_path: str, data_dir: str, results: str, out: str) -> None:
    """One attempt at the job in a subprocess (the kill test); its result goes to ``out``."""
    torch.set_num_threads(1)
    patch_data_side(engine_job, Path(data_dir))
    job = make_job(Path(model_path), tasks=("tiny_ner", "tiny_cls"), strategy="multi_task",
                   max_epochs=4, eval_every=6, patience=100, checkpoint_every_s=0.0)
    job_dir = Path(results) / job.job_id
    job_dir.mkdir(parents=True, exist_ok=True)
    ctx = JobContext(job_dir=job_dir, data_dir=Path(data_dir), tracking=BACKENDS,
                     results_dir=Path(results), heartbeat=lambda progress: time.sleep(0.03))
    result = engine_job.run_job(job, ctx)
    Path(out).write_text(json.dumps(result))


def _child(args: list[str]) -> subprocess.Popen:
    code = ("import sys; from tests.runner.recipes.test_train_job_tracking import child_main; "
            "child_main(*sys.argv[1:])")
    child_env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1",
                     WANDB_MODE="offline", WANDB_SILENT="true", RUNNER_TRACKING_FLUSH_S="0.2")
    child_env.pop("MLFLOW_TRACKING_URI", None)
    child_env.pop("WANDB_SERVICE", None)
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=child_env)


def test_three_backends_kill_minus_9_and_resume(env, tmp_path, monkeypatch):  # noqa: F811
    for name in BACKENDS:
        pytest.importorskip(name)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")   # MLflow >= 3.7 reads file stores
    #                                                          only when told
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from runner.observe.tracking import read_wandb_history

    model_path, data_dir, _ = env
    results, out = tmp_path / "results", tmp_path / "result.json"
    args = [str(model_path), str(data_dir), str(results), str(out)]
    job_id = make_job(model_path).job_id
    kill_after_first_checkpoint(_child(args), results / job_id / "checkpoints", 240, (0.3, 0.8))
    assert not out.exists(), "the job finished before the kill; make it longer"
    assert _child(args).wait(timeout=400) == 0
    result = json.loads(out.read_text())
    steps = list(range(1, result["train_results"]["steps"] + 1))
    test_f1 = result["per_task"]["tiny_ner"]["metrics"]["f1"]

    # TensorBoard: the resume's purge event drops the killed attempt's steps after the restore
    acc = EventAccumulator(str(results / "tracking" / "tensorboard" / job_id),
                           size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    for tag in ("train/loss", "train/lr", "train/tokens_total", "train/tokens/tiny_ner",
                "train/tokens/tiny_cls"):
        assert [e.step for e in acc.Scalars(tag)] == steps, tag
    val_steps = [h["step"] for h in result["validation_history"]]
    assert [e.step for e in acc.Scalars("val/score")] == val_steps
    assert [e.step for e in acc.Scalars("val/tiny_ner/f1")] == val_steps
    assert acc.Scalars("train/tokens_total")[-1].value == result["token_count"]
    assert acc.Scalars("test/tiny_ner/f1")[-1].value == pytest.approx(test_f1)

    # MLflow: one run, continued; the file store's killed-attempt points were truncated
    client = MlflowClient(tracking_uri=(results / "tracking" / "mlruns").resolve().as_uri())
    runs = client.search_runs([client.get_experiment_by_name("unit").experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == job_id and run.info.status == "FINISHED"
    tags = run.data.tags
    assert (tags["model"], tags["strategy"], tags["seed"], tags["study"]) == \
        ("tiny", "multi_task", "1", "unit")
    assert tags["experiment"] == "multi_task" and "tiny_ner" in tags["tasks"]
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == steps     # one value per step, none twice
    final = client.get_metric_history(run.info.run_id, "test/tiny_ner/f1")
    assert [m.value for m in final] == pytest.approx([test_f1])
    assert run.data.params["learning_rate"] == "0.003"

    # W&B offline: one run id, two attempts' files; each step in exactly one of them
    files = sorted((results / "tracking" / "wandb" / "wandb").glob("offline-run-*/*.wandb"))
    assert len(files) == 2
    logged = [s for f in files for s, row in read_wandb_history(f) if "train/loss" in row]
    assert sorted(logged) == steps and len(set(logged)) == len(logged)


def test_backend_not_installed_is_one_warning(env, caplog, monkeypatch):  # noqa: F811
    model_path, _, ctx = env
    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name.split(".")[0] == "wandb":
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    job = make_job(model_path, max_epochs=1)
    c = ctx(tracking=("wandb",))
    with caplog.at_level(logging.WARNING):
        result = engine_job.run_job(job, c)
    warnings = [r for r in caplog.records if "wandb" in r.getMessage()
                and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not installed" in warnings[0].getMessage()
    assert result["train_results"]["steps"] > 0


def test_tracking_off_changes_nothing(env):  # noqa: F811
    """The same job with and without a (TensorBoard) tracker: the same numbers."""
    pytest.importorskip("tensorboard")
    model_path, _, ctx = env
    job = make_job(model_path, max_epochs=1)
    plain = engine_job.run_job(job, ctx("plain"))
    tracked_ctx = ctx("tracked", tracking=("tensorboard",))
    tracked_ctx.results_dir = tracked_ctx.job_dir.parent / "tracked_results"
    tracked = engine_job.run_job(job, tracked_ctx)
    for key in ("test_results", "validation_history", "token_count", "train_results"):
        a, b = plain[key], tracked[key]
        if key == "train_results":
            a = {k: v for k, v in a.items() if k not in ("train_runtime",
                                                         "train_samples_per_second")}
            b = {k: v for k, v in b.items() if k not in ("train_runtime",
                                                         "train_samples_per_second")}
        assert a == b, key
    assert (tracked_ctx.results_dir / "tracking" / "tensorboard" / job.job_id).is_dir()
