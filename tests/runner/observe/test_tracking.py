"""Tracking, for real and offline: a job killed with SIGKILL after logging steps 1..5, resumed
from its step-3 checkpoint, logs 4..8; each backend's own reader then sees one point per step.

* TensorBoard: read back with tensorboard's EventAccumulator -- the resumed attempt's values
  for 4 and 5 (the purge event discards the killed attempt's);
* MLflow (local file store): read back through MlflowClient.get_metric_history -- likewise
  the resumed values;
* W&B offline: the run files on disk, read record by record -- W&B keeps the killed
  attempt's values for the steps it already has (its step only grows); the flush after step 5
  commits the row the SDK would otherwise hold open until a next step, so the killed attempt
  wrote 1..5 and the resumed one 6..8.
"""

from __future__ import annotations

import builtins
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.observe import tracking
from runner.observe.tracking import open_tracker, parse_tracking_flag, validate_backends

ROOT = Path(__file__).resolve().parents[3]
TAGS = {"study": "tiny", "model": "minilm", "tasks": ["bc2gm", "gad"], "strategy": "multi_task",
        "experiment": "multi", "seed": 1}
CONFIG = {"learning_rate": 3e-4, "batch_size": 16, "max_train_examples": {"bc2gm": 400}}

CHILD = """
import logging, os, signal, sys, time
from runner.observe.tracking import open_tracker
t = open_tracker(sys.argv[2].split(","), sys.argv[1], "job-a", {tags!r}, {config!r},
                 logging.getLogger("child"))
assert t.active == sys.argv[2].split(","), t.active
for s in range(1, 6):
    t.log_scalars(s, {{"train/loss": 100.0 + s, "train/tokens/bc2gm": 1000 * s}})
t.flush()
time.sleep(2.5)   # > RUNNER_TRACKING_FLUSH_S: what a writer flushes on its own timer
# W&B's service flushes on its own timer too; on a loaded machine give it up to 30 s more to
# have written rows 1..5 (the flush committed step 5's row), then kill
from pathlib import Path
from runner.observe.tracking import read_wandb_history
deadline = time.monotonic() + 30
while "wandb" in t.active and time.monotonic() < deadline:
    files = list(Path(sys.argv[1]).glob("tracking/wandb/wandb/offline-run-*/run-*.wandb"))
    if files and len(read_wandb_history(files[0])) >= 5:
        break
    time.sleep(0.2)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ, WANDB_MODE="offline", RUNNER_TRACKING_FLUSH_S="1",
               PYTHONPATH=str(ROOT), WANDB_SILENT="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    # a W&B service started by an earlier test in this process would be shared with the
    # child through WANDB_SERVICE; the killed child's run would then stay "in use" there
    env.pop("WANDB_SERVICE", None)
    return env


def kill_then_resume(tmp_path: Path, backends: list[str], monkeypatch) -> Path:
    results = tmp_path / "results"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD.format(tags=TAGS, config=CONFIG)))
    proc = subprocess.run([sys.executable, str(script), str(results), ",".join(backends)],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=240,
                          check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    for k in ("WANDB_MODE", "RUNNER_TRACKING_FLUSH_S", "WANDB_SILENT"):
        monkeypatch.setenv(k, _env(tmp_path)[k])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    t = open_tracker(backends, results, "job-a", TAGS, CONFIG, logging.getLogger("t"),
                     resume_step=3)
    assert t.active == backends
    for s in range(4, 9):
        t.log_scalars(s, {"train/loss": 200.0 + s, "train/tokens/bc2gm": 1000 * s})
    t.log_final({"test": {"bc2gm": {"f1": 0.5}}})
    t.close("finished")
    return results


EXPECTED = {s: (100.0 + s if s <= 3 else 200.0 + s) for s in range(1, 9)}


def test_tensorboard_kill_and_resume(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results = kill_then_resume(tmp_path, ["tensorboard"], monkeypatch)
    logdir = results / "tracking" / "tensorboard" / "job-a"
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 2   # one per attempt
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, 9))
    assert {e.step: e.value for e in loss} == pytest.approx(EXPECTED)
    assert [e.step for e in acc.Scalars("train/tokens/bc2gm")] == list(range(1, 9))
    final = acc.Scalars("test/bc2gm/f1")
    assert [(e.step, e.value) for e in final] == [(8, 0.5)]
    assert "config" in acc.Tags()["tensors"]


def test_mlflow_kill_and_resume(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    results = kill_then_resume(tmp_path, ["mlflow"], monkeypatch)
    client = MlflowClient(tracking_uri=(results / "tracking" / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1                      # the resumed attempt continued the same run
    run = runs[0]
    assert run.info.run_name == "job-a" and run.info.status == "FINISHED"
    assert run.data.tags["model"] == "minilm" and run.data.tags["tasks"] == "bc2gm,gad"
    assert run.data.tags["seed"] == "1" and run.data.tags["runner.job_id"] == "job-a"
    assert run.data.params["learning_rate"] == "0.0003"
    assert run.data.params["max_train_examples.bc2gm"] == "400"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(1, 9))
    assert {m.step: m.value for m in history} == pytest.approx(EXPECTED)
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id,
                                                                 "test/bc2gm/f1")] == [(8, 0.5)]


def test_wandb_offline_kill_and_resume(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    results = kill_then_resume(tmp_path, ["wandb"], monkeypatch)
    files = sorted((results / "tracking" / "wandb" / "wandb").glob(
        "offline-run-*-job-a/run-job-a.wandb"))
    assert len(files) == 2                     # one offline run folder per attempt, same id
    first, second = (tracking.read_wandb_history(f) for f in files)
    assert [s for s, _ in first] == [1, 2, 3, 4, 5]   # the flush committed step 5's row
    assert [s for s, _ in second] == [6, 7, 8]
    points = {s: row["train/loss"] for s, row in first + second}
    assert len(points) == 8
    assert points == pytest.approx({s: (100.0 + s if s <= 5 else 200.0 + s)
                                    for s in range(1, 9)})


def test_three_backends_together(tmp_path, monkeypatch):
    for name in ("tensorboard", "mlflow", "wandb"):
        pytest.importorskip(name)
    results = kill_then_resume(tmp_path, ["tensorboard", "mlflow", "wandb"], monkeypatch)
    assert (results / "tracking" / "tensorboard" / "job-a").is_dir()
    assert (results / "tracking" / "mlruns").is_dir()
    assert (results / "tracking" / "wandb" / "wandb").is_dir()


def test_missing_backend_is_one_warning(tmp_path, monkeypatch, caplog):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.split(".")[0] == "tensorboard":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with caplog.at_level(logging.WARNING, logger="t"):
        t = open_tracker(["tensorboard"], tmp_path, "job-b", TAGS, CONFIG,
                         logging.getLogger("t"))
        for s in range(1, 4):
            t.log_scalars(s, {"train/loss": 1.0})
        t.log_final({"test/f1": 0.1})
        t.close()
    assert t.active == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "tensorboard is not installed" in warnings[0].getMessage()


def test_failing_backend_is_dropped_after_one_warning(tmp_path, monkeypatch, caplog):
    pytest.importorskip("tensorboard")

    def boom(self, step, values):
        raise OSError("disk full")

    monkeypatch.setattr(tracking._TensorBoard, "log", boom)
    with caplog.at_level(logging.WARNING, logger="t"):
        t = open_tracker(["tensorboard"], tmp_path, "job-c", TAGS, CONFIG,
                         logging.getLogger("t"))
        assert t.active == ["tensorboard"]
        for s in range(1, 5):
            t.log_scalars(s, {"train/loss": 1.0})
        t.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "disk full" in warnings[0], warnings


def test_wandb_online_without_network_does_not_raise(tmp_path, monkeypatch, caplog):
    """A backend whose start raises (here: wandb.init) is one warning; the others go on."""
    wandb = pytest.importorskip("wandb")
    pytest.importorskip("tensorboard")

    def no_network(*args, **kwargs):
        raise wandb.errors.CommError("network is unreachable")

    monkeypatch.setattr(wandb, "init", no_network)
    with caplog.at_level(logging.WARNING, logger="t"):
        t = open_tracker(["wandb", "tensorboard"], tmp_path, "job-d", TAGS, CONFIG,
                         logging.getLogger("t"))
        t.log_scalars(1, {"train/loss": 1.0})
        t.close()
    assert t.active == []   # closed
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "wandb could not start" in warnings[0]
    assert list((tmp_path / "tracking" / "tensorboard" / "job-d").glob("events.*"))


def test_names_are_validated():
    assert validate_backends(["TensorBoard", "wandb", "tensorboard"]) == ["tensorboard", "wandb"]
    assert parse_tracking_flag("mlflow, wandb") == ["mlflow", "wandb"]
    assert parse_tracking_flag("none") == [] and parse_tracking_flag("") == []
    with pytest.raises(ValueError, match="did you mean 'tensorboard'"):
        validate_backends(["tensorbord"])


def test_scalars_are_flattened_and_filtered():
    assert tracking._scalars({"a": {"b": 1, "c": float("nan")}, "d": True, "e": "x",
                              "f": None, "g": 2.5}) == {"a/b": 1.0, "g": 2.5}
    assert tracking.wandb_run_id("abc/def 1") == "abc-def-1"
