"""A training job's GPU paths on the CPU (tiny BERT of tests/runner/jobs.py): a CUDA
out-of-memory error injected on a chosen step (the job halves its micro-batch, keeps its
effective batch and token count, records it), and an fp16 job with loss scaling (CPU autocast,
a real grad scaler whose scale moves) SIGKILLed and resumed to the uninterrupted result."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import torch

from runner.jobapi import JobContext, JobFailed, JobInterrupted
from runner.ml import checkpoint as ckpt
from runner.ml import train as engine_train
from runner.recipes import heldout as engine_heldout
from runner.recipes import train_job as engine_job
from tests.runner import jobs
from tests.runner.jobs import kill_and_resume, make_job, patch_data_side, stop_after

tiny_model, env = jobs.tiny_model, jobs.env   # the shared fixtures

STABLE = ("token_count", "tokens_per_task", "validation_history", "test_results", "per_task")


# ------------------------------------------------------------------------------ OOM retry
def inject_oom(monkeypatch, at_steps: list[int]) -> list[tuple[int, int]]:
    """Raise CUDA's out-of-memory error when the loop is about to take optimizer step
    ``at_steps[0]`` (then the next entry, in the next attempt); returns the (step, micro-batch)
    of each step taken."""
    pending = list(at_steps)
    taken: list[tuple[int, int]] = []
    real = engine_train._Run.optimizer_step

    def optimizer_step(self):
        if pending and self.progress.step + 1 == pending[0]:
            pending.pop(0)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        real(self)
        taken.append((self.progress.step, self.progress.batch_size))
    monkeypatch.setattr(engine_train._Run, "optimizer_step", optimizer_step)
    return taken


def oom_job(model_path, **cfg):
    return make_job(model_path, **{"max_epochs": 2, "eval_every": 5, "patience": 100,
                                   "batch_size": 4, "grad_accumulation": 1, **cfg})


def test_no_oom_records_none(env):
    model_path, _, ctx = env
    result = engine_job.run_job(oom_job(model_path), ctx())
    tr = result["train_results"]
    assert tr["oom_retry"] is None and (tr["batch_size"], tr["grad_accumulation"]) == (4, 1)


def test_oom_on_a_chosen_step_halves_the_micro_batch_and_keeps_batch_and_tokens(
        env, monkeypatch, caplog):
    model_path, _, ctx = env
    reference = engine_job.run_job(oom_job(model_path), ctx("reference"))
    taken = inject_oom(monkeypatch, [7])
    with caplog.at_level(logging.WARNING):
        result = engine_job.run_job(oom_job(model_path), ctx("oom"))
    tr = result["train_results"]
    assert tr["oom_retry"] == {"batch_size": 2, "grad_accumulation": 2}
    assert (tr["batch_size"], tr["grad_accumulation"]) == (2, 2)          # 4 x 1 examples
    assert "CUDA out of memory: retrying with batch size 2 x 2" in caplog.text
    # six steps at 4, then from scratch at 2 (its checkpoints of batch 4 discarded)
    assert taken[:6] == [(s, 4) for s in range(1, 7)] and taken[6] == (1, 2)
    assert {b for _, b in taken[6:]} == {2}
    # the same effective batch: as many optimizer steps, every training token twice
    assert tr["steps"] == reference["train_results"]["steps"]
    assert result["token_count"] == reference["token_count"]
    assert result["tokens_per_task"] == reference["tokens_per_task"]
    assert [h["step"] for h in result["validation_history"]] == \
        [h["step"] for h in reference["validation_history"]]


def test_a_job_stopped_after_its_oom_retry_resumes_at_the_halved_batch(env, monkeypatch):
    """The retry's record and micro-batch come from its checkpoint when another process
    resumes it (the one that hit the OOM was stopped)."""
    model_path, _, ctx = env
    inject_oom(monkeypatch, [3])
    whole = engine_job.run_job(oom_job(model_path), ctx("whole"))
    inject_oom(monkeypatch, [3])
    with pytest.raises(JobInterrupted):
        engine_job.run_job(oom_job(model_path, checkpoint_every_s=0.0),
                           ctx("split", should_stop=stop_after(9)))
    inject_oom(monkeypatch, [])
    resumed = engine_job.run_job(oom_job(model_path, checkpoint_every_s=0.0), ctx("split"))
    assert resumed["train_results"]["oom_retry"] == {"batch_size": 2, "grad_accumulation": 2}
    for key in STABLE:
        assert resumed[key] == whole[key], key


@pytest.mark.parametrize("batch_size,oom_steps,message", [
    (4, [3, 2], "CUDA out of memory at batch size 2"),   # the retry runs out of memory too
    (1, [2], "CUDA out of memory at batch size 1"),      # nothing left to halve
])
def test_oom_that_the_retry_cannot_cure_fails_the_job(env, monkeypatch, batch_size, oom_steps,
                                                      message):
    model_path, _, ctx = env
    inject_oom(monkeypatch, oom_steps)
    with pytest.raises(JobFailed, match=message):
        engine_job.run_job(oom_job(model_path, batch_size=batch_size), ctx())


# -------------------------------------------------------------- fp16 + grad scaler, SIGKILL
def fp16_with_moving_scale(monkeypatch_like) -> list:
    """Train in fp16 (CPU autocast) with an enabled grad scaler that starts high and grows
    every 2 steps, so its scale moves both ways during the job: a resume that lost it would
    step differently.  Returns the scalers made."""
    made = []

    def fp16(precision, device):
        return torch.float16

    def scaler(device, enabled):
        s = torch.amp.GradScaler("cpu", enabled=enabled, init_scale=2.0 ** 24,
                                 growth_interval=2)
        made.append(s)
        return s
    for module in (engine_train, engine_job, engine_heldout):
        monkeypatch_like.setattr(module, "autocast_dtype", fp16)
    monkeypatch_like.setattr(engine_train, "make_grad_scaler", scaler)
    return made


class _Setattr:
    """monkeypatch.setattr for a child process (nothing to undo)."""
    @staticmethod
    def setattr(target, name, value):
        setattr(target, name, value)


def fp16_child_main(model_path: str, data_dir: str, job_dir: str, out: str) -> None:
    """One fp16 job in a subprocess (the SIGKILL test); its result and the final scaler
    state to ``out``."""
    torch.set_num_threads(1)
    patch_data_side(engine_job, Path(data_dir))
    scalers = fp16_with_moving_scale(_Setattr)
    job = make_job(Path(model_path), max_epochs=3, eval_every=5, patience=100,
                   checkpoint_every_s=0.0)
    ctx = JobContext(job_dir=Path(job_dir), data_dir=Path(data_dir),
                     heartbeat=lambda progress: time.sleep(0.03))
    result = engine_job.run_job(job, ctx)
    result["scaler_state"] = scalers[-1].state_dict()
    Path(out).write_text(json.dumps(result))


@pytest.mark.slow
def test_fp16_job_killed_and_resumed_equals_the_uninterrupted_one(env, tmp_path):
    model_path, data_dir, _ = env
    saved = {}

    def at_kill(victim_dir):
        # the newest (a kill between a save and the pruning leaves two), which it resumes from
        step, path = ckpt.list_checkpoints(victim_dir / "checkpoints")[0]
        saved.update(torch.load(path / "optimizer.pt", weights_only=True)["scaler"], step=step)
    a, b = kill_and_resume("tests.runner.recipes.test_gpu_paths:fp16_child_main", model_path,
                           data_dir, tmp_path, 180, (0.2, 1.0), at_kill)
    assert saved["scale"] != 2.0 ** 24 and saved["growth_interval"] == 2   # a moved scale
    step = saved["step"]
    assert b["provenance"]["precision"] == "float16"
    assert 0 < step < b["train_results"]["steps"]
    assert b["scaler_state"] == a["scaler_state"]
    for key in STABLE:
        assert b[key] == a[key], key


def test_fp16_resume_without_the_scaler_state_would_differ(env, monkeypatch):
    """The other side: a resume that drops the saved scaler state ends with another scale,
    so the equality above depends on the state being restored."""
    model_path, _, ctx = env
    scalers = fp16_with_moving_scale(monkeypatch)
    job = make_job(model_path, max_epochs=3, eval_every=5, patience=100,
                   checkpoint_every_s=0.0)
    engine_job.run_job(job, ctx("whole"))
    whole_state = scalers[-1].state_dict()
    with pytest.raises(JobInterrupted):
        engine_job.run_job(job, ctx("split", should_stop=stop_after(7)))
    monkeypatch.setattr(torch.amp.GradScaler, "load_state_dict", lambda self, state: None)
    engine_job.run_job(job, ctx("split"))
    assert scalers[-1].state_dict() != whole_state
