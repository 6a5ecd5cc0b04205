"""Checkpoints a results folder may hold, as an attacker, a kill or a mix-up leaves them:
nothing in them runs code, a corrupt or foreign one is skipped for an older one, and a
finished job's checkpoint outlives the job until its result.json is written."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import runner.orchestrate.attempt
from mtl_contract.files import sha256_file
from runner.jobapi import JobInterrupted
from runner.ml import checkpoint as ckpt
from runner.orchestrate.attempt import run_claimed
from runner.orchestrate.ledger import Ledger, Worker
from runner.recipes import train_job as engine_job
from tests.runner import jobs
from tests.runner.jobs import make_job, stop_after

# the engine tests' fixtures: a tiny BERT and synthetic tasks behind runner.recipes.train_job's seams
tiny_model, env = jobs.tiny_model, jobs.env

TASKS = ("tiny_ner",)


class RunsOnLoad:
    """Unpickling this calls ``fn(*args)``: what a crafted checkpoint file would do."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def reseal(folder: Path) -> None:
    """Rewrite checksums.json to match the files, as whoever planted them would."""
    (folder / "checksums.json").write_text(json.dumps(
        {n: sha256_file(folder / n) for n in ckpt.FILES}))


def plant(root: Path, source: Path, step: int, files: dict) -> Path:
    """checkpoint-<step>: a copy of ``source`` with ``files`` (name -> object to torch.save,
    or for progress.json a dict of fields to change), checksums matching."""
    dest = root / f"checkpoint-{step}"
    shutil.copytree(source, dest)
    for name, obj in files.items():
        if name == "progress.json":
            progress = json.loads((dest / name).read_text())
            (dest / name).write_text(json.dumps({**progress, **obj}))
        else:
            torch.save(obj, dest / name)
    reseal(dest)
    return dest


def tiny_training_objects():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return model, opt, sched, torch.amp.GradScaler("cpu", enabled=False)


def progress_at(step: int, tasks=("t",)) -> ckpt.TrainingProgress:
    return ckpt.TrainingProgress("single_task", list(tasks), 4, 1, 100, step=step)


def interrupted_at_7(model_path: Path, ctx, name: str):
    """The job's reference result, and a folder of the same job stopped at step 7."""
    job = make_job(model_path, tasks=TASKS, max_epochs=2, eval_every=4, patience=100)
    reference = engine_job.run_job(job, ctx("reference"))
    c = ctx(name, should_stop=stop_after(7))
    with pytest.raises(JobInterrupted):
        engine_job.run_job(job, c)
    root = c.job_dir / "checkpoints"
    assert [p.name for _, p in ckpt.list_checkpoints(root)] == ["checkpoint-7"]
    return job, reference, replace(c, should_stop=lambda: False)


def same_result(a: dict, b: dict) -> None:
    for key in ("test_results", "tokens_per_task", "validation_history"):
        assert a[key] == b[key], key
    assert a["train_results"]["train_loss"] == b["train_results"]["train_loss"]


# -------------------------------------------------------------------- code in a checkpoint
def test_a_crafted_optimizer_or_rng_file_runs_nothing_and_the_job_falls_back(env, tmp_path,
                                                                            caplog):
    model_path, _, ctx = env
    job, reference, c = interrupted_at_7(model_path, ctx, "victim")
    root = c.job_dir / "checkpoints"
    good = root / "checkpoint-7"
    by_system, by_open = tmp_path / "ran-os-system", tmp_path / "ran-open"
    optim = {"optimizer": RunsOnLoad(os.system, f"touch '{by_system}'"), "scheduler": {},
             "scaler": {}}
    plant(root, good, 9, {"optimizer.pt": optim})
    rng = torch.load(good / "rng.pt", weights_only=False)   # the test's own file
    plant(root, good, 11, {"rng.pt": {**rng, "python": RunsOnLoad(open, str(by_open), "w")}})
    with caplog.at_level(logging.WARNING):
        resumed = engine_job.run_job(job, c)
    assert not by_system.exists() and not by_open.exists()   # nothing ran
    same_result(resumed, reference)                          # resumed from checkpoint-7
    assert "checkpoint-11 is corrupt" in caplog.text and "falling back to checkpoint-9" in \
        caplog.text and "falling back to checkpoint-7" in caplog.text
    assert "checkpoint-9 is corrupt: optimizer.pt needs more than tensors and plain values: " \
        in caplog.text and "GLOBAL posix.system" in caplog.text
    # set aside: a later save's pruning keeps the new checkpoint, not a refused one
    names = sorted(p.name for p in root.iterdir())
    assert [n for n in names if n.startswith("checkpoint-")] == ["checkpoint-20"]
    assert sum(n.startswith("corrupt-checkpoint-") for n in names) == 2


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def draws() -> tuple:
    return random.random(), random.gauss(0, 1), np.random.rand(), np.random.randn(), \
        torch.rand(1).item()


def test_rng_state_is_plain_tensors_and_restores_every_generator(tmp_path):
    root = tmp_path / "checkpoints"
    path = ckpt.save_checkpoint(root, progress_at(3), *tiny_training_objects())
    torch.load(path / "rng.pt", weights_only=True)   # no allow-list needed at all
    seed_all(1)
    np.random.randn(), random.gauss(0, 1)   # leaves a cached gaussian in numpy and python
    ckpt.save_checkpoint(root, progress_at(4), *tiny_training_objects())
    expected = draws()
    seed_all(2)
    *_, rng = ckpt.load_latest_checkpoint(root)
    ckpt.restore_rng(rng)
    assert draws() == expected


@pytest.mark.parametrize("torch_can_allow_list", [True, False])
def test_an_rng_file_of_the_old_format_loads_only_through_the_numpy_allow_list(
        tmp_path, monkeypatch, caplog, torch_can_allow_list):
    """rng.pt written before numpy's state became a tensor (a uint32 ndarray inside): loaded
    with exactly numpy's four globals allowed; where torch cannot allow-list (before 2.5) it
    is refused as corrupt, like any file that needs more than tensors."""
    root = tmp_path / "checkpoints"
    objects = tiny_training_objects()
    ckpt.save_checkpoint(root, progress_at(5), *objects, keep_last=2)
    newest = ckpt.save_checkpoint(root, progress_at(10), *objects, keep_last=2)
    np.random.seed(3)
    old = {"python": random.getstate(), "numpy": np.random.get_state(),
           "torch": torch.get_rng_state()}
    draw = np.random.rand()
    torch.save(old, newest / "rng.pt")
    reseal(newest)
    if not torch_can_allow_list:
        monkeypatch.delattr(torch.serialization, "safe_globals")
    with caplog.at_level(logging.WARNING):
        path, _, _, _, rng = ckpt.load_latest_checkpoint(root, logging.getLogger("t"))
    if torch_can_allow_list:
        assert path.name == "checkpoint-10" and not caplog.text
        ckpt.restore_rng(rng)
        assert np.random.rand() == draw
    else:
        assert path.name == "checkpoint-5" and "checkpoint-10 is corrupt" in caplog.text


@pytest.mark.parametrize("bad", [
    {"python": 1, "numpy": 2, "torch": 3},                       # plain values, no RNG state
    {"python": (3, (1, 2), None), "numpy": ("MT19937", torch.zeros(3), 0, 0, 0.0),
     "torch": torch.zeros(3, dtype=torch.uint8)},                # RNG-shaped, wrong content
    [torch.zeros(2)]])
def test_an_rng_file_that_holds_no_rng_state_is_corrupt(tmp_path, bad):
    root = tmp_path / "checkpoints"
    objects = tiny_training_objects()
    ckpt.save_checkpoint(root, progress_at(5), *objects, keep_last=2)
    newest = ckpt.save_checkpoint(root, progress_at(10), *objects, keep_last=2)
    torch.save(bad, newest / "rng.pt")
    reseal(newest)
    path, *_ = ckpt.load_latest_checkpoint(root)
    assert path.name == "checkpoint-5"


def test_best_weights_that_would_run_code_are_not_used(tmp_path):
    root = tmp_path / "checkpoints"
    model = torch.nn.Linear(3, 2)
    ckpt.save_best(root, model, {"step": 4})
    marker = tmp_path / "ran"
    torch.save({"weight": RunsOnLoad(open, str(marker), "w")}, root / "best" / "model.pt")
    meta = json.loads((root / "best" / "meta.json").read_text())
    (root / "best" / "meta.json").write_text(json.dumps(
        {**meta, "sha256": sha256_file(root / "best" / "model.pt")}))
    assert ckpt.load_best(root) is None and not marker.exists()


# ----------------------------------------------------------------- another job's checkpoint
def test_another_jobs_checkpoint_is_corrupt_and_the_job_resumes_from_its_own(env, caplog):
    """It used to fail the job (and --retry-failed failed it again, forever)."""
    model_path, _, ctx = env
    job, reference, c = interrupted_at_7(model_path, ctx, "mixed")
    root = c.job_dir / "checkpoints"
    plant(root, root / "checkpoint-7", 9, {"progress.json": {"tasks": ["tiny_cls"], "step": 9}})
    with caplog.at_level(logging.WARNING):
        resumed = engine_job.run_job(job, c)
    same_result(resumed, reference)
    assert "checkpoint-9 is corrupt: it belongs to another job (single_task ['tiny_cls']); " \
        "falling back to checkpoint-7" in caplog.text


# ------------------------------------------------------------- a checkpoint of an older version
@pytest.mark.parametrize("field,setting,new,legacy,unknown,known", [
    ("batch_order", "BATCH_ORDER", "hf-groups", "groups-of-50", "zigzag",
     "hf-groups, groups-of-50"),
    ("dropout", "DROPOUT", "uniform-mask", "torch", "bernoulli", "uniform-mask, torch")])
def test_a_checkpoint_that_names_no_recipe_resumes_with_the_one_it_was_written_with(
        env, monkeypatch, caplog, field, setting, new, legacy, unknown, known):
    """Checkpoints written before issue 14 changed the batch order, or before the uniform-mask
    dropout, name neither: they resume with what they started with (``groups-of-50`` batches,
    torch's dropout: the uninterrupted job's result exactly), not with the new recipe; one
    naming what this version does not know is corrupt."""
    import runner.ml.train as engine_train

    model_path, _, ctx = env
    fresh = engine_job.run_job(make_job(model_path, tasks=TASKS, max_epochs=2, eval_every=4,
                                        patience=100), ctx("new"))
    assert fresh["train_results"][field] == new
    with monkeypatch.context() as m:   # the engine as it was: its progress named nothing
        m.setattr(engine_train, setting, legacy)
        job, reference, c = interrupted_at_7(model_path, ctx, "old")
    assert reference["test_results"] != fresh["test_results"]   # the recipes differ here
    root = c.job_dir / "checkpoints"
    progress = json.loads((root / "checkpoint-7" / "progress.json").read_text())
    assert progress.pop(field) == legacy
    (root / "checkpoint-7" / "progress.json").write_text(json.dumps(progress))
    reseal(root / "checkpoint-7")
    plant(root, root / "checkpoint-7", 9, {"progress.json": {field: unknown}})
    with caplog.at_level(logging.WARNING):
        resumed = engine_job.run_job(job, c)
    same_result(resumed, reference)
    assert resumed["train_results"][field] == legacy
    assert f"checkpoint-9 is corrupt: unreadable (ValueError: {field} {unknown!r} is not one " \
        f"of {known}); falling back to checkpoint-7" in caplog.text


def test_a_set_aside_checkpoint_no_longer_shadows_newer_saves(tmp_path):
    root = tmp_path / "checkpoints"
    objects = tiny_training_objects()
    ckpt.save_checkpoint(root, progress_at(5), *objects, keep_last=2)
    ckpt.save_checkpoint(root, progress_at(10, tasks=("other",)), *objects, keep_last=2)
    path, progress, *_ = ckpt.load_latest_checkpoint(root, strategy="single_task", tasks=["t"])
    assert path.name == "checkpoint-5"
    ckpt.save_checkpoint(root, replace(progress, step=6), *objects)   # keep_last=1
    assert [p.name for _, p in ckpt.list_checkpoints(root)] == ["checkpoint-6"]


# ------------------------------------------------------------- checkpoints outlive the job
class Killed(BaseException):
    """What a kill -9 looks like to the code after it: nothing more of it runs."""


class KilledBeforeTheResult(Ledger):
    """The worker dies right after the job function returned, before result.json."""

    def __init__(self, root):
        super().__init__(root)
        self.kills = 1

    def write_result(self, job_id, result):
        if self.kills:
            self.kills -= 1
            raise Killed
        super().write_result(job_id, result)


def test_a_kill_between_the_job_and_its_result_resumes_without_retraining(env, tmp_path,
                                                                         monkeypatch):
    model_path, data_dir, _ = env
    monkeypatch.setattr(runner.orchestrate.attempt, "verify_job_data", lambda job, data_dir: None)
    job = make_job(model_path, tasks=TASKS, max_epochs=2, eval_every=4, patience=100)
    ledger = KilledBeforeTheResult(tmp_path / "results")
    steps = []

    def job_fn(job, ctx):   # records every training step the engine reports
        def heartbeat(progress):
            steps.extend([progress["step"]] if progress.get("phase") == "train" else [])
            ctx.heartbeat(progress)
        return engine_job.run_job(job, replace(ctx, heartbeat=heartbeat))

    def run():
        seen = ledger.snapshot([job.job_id]).claims.get(job.job_id)
        claim = ledger.try_claim(job.job_id, Worker("w"), seen)
        return run_claimed(job, claim, "ready", ledger, data_dir, job_fn=job_fn,
                           out=lambda msg: None)

    with pytest.raises(Killed):
        run()
    assert steps == list(range(1, 21)) and not ledger.is_done(job.job_id)
    assert run() == "done"
    assert steps == list(range(1, 21))   # the second run trained no step
    result = ledger.load_result(job.job_id)
    assert result["train_results"]["steps"] == 20
    log = (ledger.job_dir(job.job_id) / "log.txt").read_text()
    assert "resumed from checkpoint-20" in log
    # pruned once result.json was there: only the best weights stay
    assert [p.name for p in (ledger.job_dir(job.job_id) / "checkpoints").iterdir()] == ["best"]


# ----------------------------------------------------------------------------- checkpoints
def test_corrupt_latest_checkpoint_falls_back_then_restarts(tmp_path, caplog):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    root = tmp_path / "checkpoints"
    for step in (5, 10):
        prog = ckpt.TrainingProgress("single_task", ["t"], 4, 1, 100, step=step,
                                     tokens_per_task={"t": 7 * step})
        ckpt.save_checkpoint(root, prog, model, opt, sched, scaler, keep_last=2)
    (root / ".tmp-checkpoint-11-x").mkdir()  # a kill during a save leaves this behind
    path, prog, *_ = ckpt.load_latest_checkpoint(root)
    assert path.name == "checkpoint-10" and prog.tokens_per_task == {"t": 70}
    assert not (root / ".tmp-checkpoint-11-x").exists()
    data = (root / "checkpoint-10" / "model.pt").read_bytes()
    (root / "checkpoint-10" / "model.pt").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        path, prog, *_ = ckpt.load_latest_checkpoint(root, logging.getLogger("t"))
    assert path.name == "checkpoint-5" and prog.step == 5
    assert "falling back to checkpoint-5" in caplog.text
    (root / "checkpoint-5" / "progress.json").write_text("{}")
    with caplog.at_level(logging.WARNING):
        assert ckpt.load_latest_checkpoint(root, logging.getLogger("t")) is None
    assert "restarting the job from scratch" in caplog.text
    # the default keeps only the newest
    ckpt.save_checkpoint(root, replace(prog, step=20), model, opt, sched, scaler)
    assert [p.name for _, p in ckpt.list_checkpoints(root)] == ["checkpoint-20"]
