"""The executor with a stand-in job function: once-only, resumable, budgeted, concurrent."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from mtl_contract.files import sha256_file
from runner.errors import InputError
from runner.jobapi import JobInterrupted
from runner.orchestrate.attempt import run_claimed
from runner.orchestrate.ledger import Ledger, Worker
from runner.orchestrate.local import parse_time_budget, run_plan, safety_margin_s
from runner.orchestrate.report import status
from runner.orchestrate.states import job_states
from runner.study.manifest import load_manifest
from runner.study.plan import build_plan

ROOT = Path(__file__).resolve().parents[3]
ASSETS = ROOT / "tests/assets/manifests"
sys.path.insert(0, str(ASSETS))
from standin_job import standin_job

SMALL = ASSETS / "small.toml"
WIDE = ASSETS / "wide.toml"


@pytest.fixture
def env(tmp_path, monkeypatch):
    log = tmp_path / "executions.log"
    monkeypatch.setenv("STANDIN_LOG", str(log))
    monkeypatch.setenv("STANDIN_SLEEP_S", "0.02")
    monkeypatch.setenv("STANDIN_STEPS", "5")
    monkeypatch.delenv("STANDIN_FAIL", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    return {"log": log, "data": data, "tmp": tmp_path}


def events(log: Path) -> tuple[Counter, Counter]:
    lines = log.read_text().splitlines() if log.exists() else []
    starts = Counter(ln.split()[1] for ln in lines if ln.startswith("start"))
    finishes = Counter(ln.split()[1] for ln in lines if ln.startswith("finish"))
    return starts, finishes


def results(folder: Path, plan) -> dict[str, dict]:
    return {j.job_id: json.loads((folder / j.job_id / "result.json").read_text())
            for j in plan.jobs if (folder / j.job_id / "result.json").exists()}


def run(manifest, results_dir, data, **kw) -> int:
    plan = build_plan(load_manifest(manifest), data)
    kw.setdefault("heartbeat_s", 0.2)
    kw.setdefault("poll_s", 0.05)
    return run_plan(plan, results_dir, job_fn=standin_job, out=lambda msg: None, **kw)


def reference(manifest, env) -> dict[str, dict]:
    ref = env["tmp"] / "reference"
    saved = os.environ.pop("STANDIN_LOG")
    try:
        assert run(manifest, ref, env["data"]) == 0
    finally:
        os.environ["STANDIN_LOG"] = saved
    return results(ref, build_plan(load_manifest(manifest), env["data"]))


def worker_cmd(manifest, results_dir, data, *extra) -> list[str]:
    return [sys.executable, str(ASSETS / "standin_job.py"), str(manifest), str(results_dir),
            str(data), *extra]


def worker_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_runs_every_job_once_and_token_controlled_jobs_read_their_target(env):
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(SMALL), env["data"])
    assert run(SMALL, out, env["data"]) == 0
    got = results(out, plan)
    assert set(got) == {j.job_id for j in plan.jobs}
    for job in plan.jobs:
        assert (out / job.job_id / "log.txt").read_text().strip()
        if job.strategy == "token_controlled":
            ref = got[job.depends_on[0]]
            assert got[job.job_id]["target_tokens"] == ref["tokens_per_task"][job.tasks[0]]
    starts, finishes = events(env["log"])
    assert set(finishes.values()) == {1} and len(finishes) == len(plan.jobs)
    assert run(SMALL, out, env["data"]) == 0          # all done: nothing runs again
    assert events(env["log"]) == (starts, finishes)
    assert results(out, plan) == got


def test_failures_block_dependents_and_are_retried_only_on_request(env, monkeypatch):
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(SMALL), env["data"])
    monkeypatch.setenv("STANDIN_FAIL", "gad")
    assert run(SMALL, out, env["data"]) == 1
    snap = Ledger(out).snapshot(j.job_id for j in plan.jobs)
    states = job_states(plan.jobs, snap)
    by_state = Counter(states.values())
    assert by_state == {"done": 1, "failed": 2, "blocked": 2}
    text = status(plan, out)
    assert "injected failure for gad second line" in text and "blocked: 2" in text
    n_before = sum(events(env["log"])[0].values())
    monkeypatch.delenv("STANDIN_FAIL")
    assert run(SMALL, out, env["data"]) == 1          # failed jobs stay failed
    assert sum(events(env["log"])[0].values()) == n_before
    assert run(SMALL, out, env["data"], retry_failed=True) == 0
    assert results(out, plan) == reference(SMALL, env)
    assert not list((out / "ledger" / "failed").iterdir())


def test_time_budget_stops_with_exit_3_and_a_rerun_finishes(env):
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(SMALL), env["data"])
    t0 = time.monotonic()
    # 5 jobs x 5 steps x 0.05 s = 1.25 s of work in a 0.6 s budget
    os.environ["STANDIN_SLEEP_S"] = "0.05"
    assert run(SMALL, out, env["data"], time_budget_s=0.6) == 3
    assert time.monotonic() - t0 < 1.5
    assert len(results(out, plan)) < len(plan.jobs)
    assert run(SMALL, out, env["data"]) == 0
    assert results(out, plan) == reference(SMALL, env)
    _, finishes = events(env["log"])
    assert set(finishes.values()) == {1}


def test_budget_parsing_and_margin():
    assert parse_time_budget("11h30m") == 41400
    assert parse_time_budget("90s") == 90 and parse_time_budget("1.5h") == 5400
    assert parse_time_budget("45") == 45
    for bad in ("3x", "", "h", "-5", "1h-3m", "0"):
        with pytest.raises(InputError):
            parse_time_budget(bad)
    assert safety_margin_s(41400) == pytest.approx(828)  # 2% of 11h30m
    assert safety_margin_s(600) == 60 and safety_margin_s(10) == 1.0


def _steps_checkpointed(out: Path) -> int:
    """Steps the stand-in jobs have checkpointed so far, over all jobs (it only grows)."""
    total = 0
    for path in out.glob("*/checkpoint.json"):
        try:
            total += json.loads(path.read_text())["step"]
        except (OSError, ValueError, KeyError):
            continue
    return total


def test_kill_9_at_observed_points_loses_nothing_and_runs_each_job_once(env):
    """Each round kills -9 once the worker is seen to have checkpointed a random number of
    steps more (1 to 3, of the study's 25), then a random part of a step later, so the kill
    lands anywhere in a job -- mid-step, in a checkpoint write, between a job's end and its
    result.json -- and, decided by what the worker did rather than by the clock, every round
    kills on a fast machine as on a slow one."""
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(SMALL), env["data"])
    rng = random.Random(20261125)
    step_s = 0.05
    wenv = {**worker_env(), "STANDIN_SLEEP_S": str(step_s)}
    kills = 0
    for _ in range(6):   # at most 6 x (3 + 2) steps: the study never finishes before a kill
        target = _steps_checkpointed(out) + rng.randint(1, 3)
        proc = subprocess.Popen(worker_cmd(SMALL, out, env["data"]), env=wenv,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while _steps_checkpointed(out) < target and proc.poll() is None:
            assert time.monotonic() < deadline, "the worker made no progress"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, step_s))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    final = subprocess.run(worker_cmd(SMALL, out, env["data"]), env=wenv, capture_output=True,
                           text=True, timeout=60, check=False)
    assert final.returncode == 0, final.stdout + final.stderr
    assert kills == 6
    assert results(out, plan) == reference(SMALL, env)
    _, finishes = events(env["log"])
    assert set(finishes) == {j.job_id for j in plan.jobs}
    # a kill between the job's return and its atomic result write repeats that job's end
    assert sum(finishes.values()) - len(plan.jobs) <= kills
    # resumed runs started from their checkpoint, never from scratch after progress
    lines = env["log"].read_text().splitlines()
    assert all(ln.split()[2].isdigit() for ln in lines if ln.startswith("start"))


def test_two_concurrent_workers_never_run_a_job_twice(env):
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(WIDE), env["data"])
    wenv = {**worker_env(), "STANDIN_SLEEP_S": "0.02"}
    procs = [subprocess.Popen(worker_cmd(WIDE, out, env["data"], "--worker-id", f"w{i}"),
                              env=wenv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True) for i in range(2)]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    starts, finishes = events(env["log"])
    assert len(finishes) == len(plan.jobs) == 12
    assert set(starts.values()) == {1} and set(finishes.values()) == {1}
    assert all("done" in o for o in outputs)


def test_sigterm_checkpoints_and_exits_3_then_resumes(env):
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(SMALL), env["data"])
    wenv = {**worker_env(), "STANDIN_SLEEP_S": "0.1"}
    proc = subprocess.Popen(worker_cmd(SMALL, out, env["data"]), env=wenv,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 20
    while not (env["log"].exists() and "start" in env["log"].read_text()):
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3, stdout
    assert "run the same command again to resume" in stdout
    interrupted = [j for j in plan.jobs if not (out / j.job_id / "result.json").exists()]
    assert interrupted
    snap = Ledger(out).snapshot(j.job_id for j in plan.jobs)
    assert "interrupted" in job_states(plan.jobs, snap).values()
    assert run(SMALL, out, env["data"]) == 0
    assert results(out, plan) == reference(SMALL, env)
    lines = env["log"].read_text().splitlines()
    assert any(ln.startswith("start") and not ln.endswith(" 0") for ln in lines)  # resumed


def test_an_expired_claim_of_a_vanished_machine_is_taken_over(env):
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(SMALL), env["data"])
    ledger = Ledger(out)
    ledger.ensure()
    first = plan.jobs[0].job_id
    info = {"job_id": first, "gen": 0, "token": "t", "worker": "gone", "host": "far",
            "pid": 1, "machine": "far|x|y", "claimed_at": time.time() - 1000, "lease_s": 120}
    (ledger.claims / f"{first}.0.claim").write_text(json.dumps(info))
    assert job_states(plan.jobs, ledger.snapshot([first]))[first] == "stale"
    assert "stale" in status(plan, out)
    assert run(SMALL, out, env["data"]) == 0
    assert len(results(out, plan)) == len(plan.jobs)


def test_a_live_claim_elsewhere_is_waited_for_within_the_budget(env):
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(SMALL), env["data"])
    ledger = Ledger(out)
    # a live worker (this very process) holds the first job
    claim = ledger.try_claim(plan.jobs[0].job_id, Worker("elsewhere"), None)
    assert claim is not None
    assert run(SMALL, out, env["data"], time_budget_s=2.0) == 3   # waited, did not steal
    assert not (out / plan.jobs[0].job_id / "result.json").exists()
    assert len(results(out, plan)) == len(plan.jobs) - 1


def test_modified_data_fails_the_job_with_the_file_named(env):
    data = env["data"]
    splits = [f"{t}/{s}.parquet" for t in ("bc2gm", "gad")
              for s in ("train", "validation", "test")]
    for rel in splits:
        (data / rel).parent.mkdir(exist_ok=True)
        (data / rel).write_bytes(rel.encode())
    sums = [f"{sha256_file(data / rel)}  {rel}" for rel in splits]
    (data / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    plan = build_plan(load_manifest(SMALL), data)
    (data / "gad" / "train.parquet").write_bytes(b"changed")
    out = env["tmp"] / "r"
    assert run(SMALL, out, data) == 1
    snap = Ledger(out).snapshot(j.job_id for j in plan.jobs)
    states = job_states(plan.jobs, snap)
    gad = next(j for j in plan.jobs if j.tasks == ("gad",) and j.strategy == "single_task")
    assert states[gad.job_id] == "failed"
    assert "gad/train.parquet" in Ledger(out).failure(gad.job_id)["reason"]
    bc2gm = next(j for j in plan.jobs if j.tasks == ("bc2gm",) and j.strategy == "single_task")
    assert states[bc2gm.job_id] == "done"


def test_a_job_function_returning_garbage_fails_the_job(env):
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(SMALL), env["data"])
    rc = run_plan(plan, out, job_fn=lambda job, ctx: {"x": float("nan")}, out=lambda m: None,
                  poll_s=0.05)
    assert rc == 1
    reasons = {Ledger(out).failure(j.job_id)["reason"] for j in plan.jobs
               if (out / "ledger/failed" / f"{j.job_id}.json").exists()}
    assert reasons and all("JSON" in r for r in reasons)
    assert not any((out / j.job_id / "result.json").exists() for j in plan.jobs)


class _SlowBeats(Ledger):
    """A ledger whose heartbeat thread's write stays in flight until the owner has written
    its release (or 2 s have passed): the moment a beat that woke just before the job
    stopped would land on top of the release."""

    def __init__(self, root):
        super().__init__(root)
        self.in_flight, self.released, self.written = (threading.Event(), threading.Event(),
                                                       threading.Event())

    def heartbeat(self, claim, progress, released=False):
        if released or not threading.current_thread().name.startswith("heartbeat-"):
            super().heartbeat(claim, progress, released)
            return
        self.in_flight.set()
        self.released.wait(2.0)
        super().heartbeat(claim, progress, released)
        self.written.set()

    def release(self, claim, progress=None):
        super().release(claim, progress)
        self.released.set()


def test_a_heartbeat_in_flight_never_overwrites_the_release(env):
    plan = build_plan(load_manifest(SMALL), env["data"])
    job = plan.jobs[0]
    ledger = _SlowBeats(env["tmp"] / "r")
    claim = ledger.try_claim(job.job_id, Worker("a"), None)

    def stops_mid_beat(job, ctx):
        assert ledger.in_flight.wait(10)   # the heartbeat thread is writing right now
        raise JobInterrupted("checkpointed")

    outcome = run_claimed(job, claim, "ready", ledger, env["data"], job_fn=stops_mid_beat,
                          heartbeat_s=0.05, out=lambda msg: None)
    assert outcome == "interrupted"
    assert ledger.written.wait(10)         # every heartbeat write has landed by now
    seen = ledger.snapshot([job.job_id]).claims[job.job_id]
    assert seen.status == "released", seen   # not "running": the release is the last word
    assert ledger.try_claim(job.job_id, Worker("b"), seen) is not None   # free at once


@pytest.mark.parametrize("keep", [True, False])
def test_checkpoints_are_pruned_only_after_the_result(env, keep):
    """Once result.json is written (never before: a job whose result write fails keeps its
    checkpoints to resume from), checkpoints/ is pruned to best/, or with keep_weights =
    false deleted; the job ids are those of the default either way."""
    text = SMALL.read_text()
    manifest = env["tmp"] / "m.toml"
    manifest.write_text(text.replace("[defaults]", f"[defaults]\nkeep_weights = {str(keep).lower()}"))
    default_ids = [j.job_id for j in build_plan(load_manifest(SMALL), env["data"]).jobs]
    plan = build_plan(load_manifest(manifest), env["data"])
    assert [j.job_id for j in plan.jobs] == default_ids
    seen = {}

    def job_fn(job, ctx):
        for name in ("best", "checkpoint-3", "corrupt-checkpoint-2-0a1b2c3d"):
            folder = ctx.job_dir / "checkpoints" / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "model.safetensors").write_bytes(b"weights")
        seen[job.job_id] = job.config["keep_weights"]
        if job.tasks == ("gad",) and job.strategy == "single_task":
            return {"x": float("nan")}   # result write refused: the job fails
        return {"score": 1.0}

    out = env["tmp"] / "r"
    rc = run_plan(plan, out, job_fn=job_fn, out=lambda m: None, poll_s=0.05)
    assert rc == 1 and set(seen.values()) == {keep}
    outcomes = set()
    for job in plan.jobs:
        if job.job_id not in seen:
            continue
        done = (out / job.job_id / "result.json").exists()
        kept = sorted(p.parent.name for p in (out / job.job_id).glob("checkpoints/*/model.*"))
        expected = (["best"] if keep else []) if done else \
            ["best", "checkpoint-3", "corrupt-checkpoint-2-0a1b2c3d"]
        assert kept == expected, (job.tasks, job.strategy, done)
        assert (out / job.job_id / "checkpoints").exists() == (keep or not done)
        outcomes.add(done)
    assert outcomes == {True, False}   # both a finished and a failed job were checked


def test_a_kill_between_the_result_and_the_pruning_is_pruned_by_the_next_run(env):
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(SMALL), env["data"])
    assert run(SMALL, out, env["data"]) == 0
    for job in plan.jobs:   # what the kill left: the checkpoints a done job no longer needs
        for name in ("best", "best.old", "checkpoint-5"):
            (out / job.job_id / "checkpoints" / name).mkdir(parents=True)
    (out / plan.jobs[0].job_id / "checkpoints" / "best").rmdir()   # a kill in save_best's swap
    assert run(SMALL, out, env["data"]) == 0
    for job in plan.jobs:
        left = [p.name for p in (out / job.job_id / "checkpoints").iterdir()]
        assert left == (["best.old"] if job is plan.jobs[0] else ["best"])


def _temp_file(path: Path, age_s: float = 0.0) -> Path:
    """A leftover of atomic_write_bytes (its exact naming), last modified age_s ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half a file")
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_temporary_files_of_interrupted_writes_are_removed_when_the_job_runs_again(env):
    """Only the job's own folder, and never a file an earlier owner may still be writing: a
    worker whose lease expired (on another machine: it may be alive) keeps its fresh ones."""
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(SMALL), env["data"])
    released, expired, live = (j.job_id for j in plan.jobs[:3])
    ledger = Ledger(out)
    claim = ledger.try_claim(released, Worker("gone"), None)
    ledger.release(claim)
    info = {"job_id": expired, "gen": 0, "token": "t", "worker": "far", "host": "far",
            "pid": 1, "machine": "far|x|y", "claimed_at": time.time() - 1000, "lease_s": 120}
    (ledger.claims / f"{expired}.0.claim").write_text(json.dumps(info))
    assert ledger.try_claim(live, Worker("elsewhere"), None) is not None   # alive: this process
    doomed = [_temp_file(out / released / ".result.json.abcd_123.tmp"),
              _temp_file(out / released / "predictions" / ".gad.parquet.0a1b2c3d.tmp"),
              _temp_file(out / expired / ".result.json.zz99xx11.tmp", age_s=500)]
    kept = [_temp_file(out / expired / "predictions" / ".gad.parquet.k3pt1234.tmp", age_s=5),
            _temp_file(out / live / ".result.json.l1ve0000.tmp"),
            _temp_file(out / released / "predictions" / "gad.parquet.tmp"),   # not our naming
            _temp_file(out / released / ".tmp-checkpoint-3-x" / ".model.pt.abcdefgh.tmp")]
    assert run(SMALL, out, env["data"], time_budget_s=2.0) == 3   # the live claim is waited for
    assert (out / released / "result.json").exists() and (out / expired / "result.json").exists()
    assert [p for p in doomed if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []
    assert "removed 2 temporary file(s)" in (out / released / "log.txt").read_text()
