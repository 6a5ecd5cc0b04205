"""Issue 25 in the executor: a fenced writer, a done check that proves done, permissions as
bad input (as a non-root user: root ignores them), no writes through links, one job's
unwritable folder failing that job only, and a start loop that stops on a signal.  Each
case also runs its other branch."""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from runner.errors import InputError
from runner.orchestrate import workers
from runner.orchestrate.attempt import _space_hint, run_claimed
from runner.orchestrate.ledger import Ledger, Worker
from runner.orchestrate.local import run_plan
from runner.orchestrate.report import status
from runner.study.manifest import load_manifest
from runner.study.plan import build_plan
from tests.helpers import shared_tmp, unprivileged

ROOT = Path(__file__).resolve().parents[3]
SMALL = ROOT / "tests/assets/manifests/small.toml"


def plan_of(data: Path):
    data.mkdir(exist_ok=True)
    return build_plan(load_manifest(SMALL), data)


def writing_job(job, ctx) -> dict:
    """Writes its predictions and names them, as the engine does (no training)."""
    pred = ctx.job_dir / "predictions" / f"{job.tasks[0]}.parquet"
    pred.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"unit_id": ["a", "b"], "tp": [1, 0], "fp": [0, 1], "fn": [0, 0]}).to_parquet(
        pred, index=False)
    return {"tasks": list(job.tasks), "token_count": 10,
            "tokens_per_task": {t: 10 for t in job.tasks},
            "per_task": {job.tasks[0]: {"predictions": f"predictions/{job.tasks[0]}.parquet"}}}


def counting(calls: list):
    def job_fn(job, ctx):
        calls.append(job.job_id)
        return writing_job(job, ctx)
    return job_fn


def done_count(plan, out) -> int:
    return json.loads(status(plan, out, as_json=True))["counts"].get("done", 0)


def run(plan, out, job_fn, **kw) -> int:
    return run_plan(plan, out, job_fn=job_fn, out=lambda msg: None, heartbeat_s=0.2,
                    poll_s=0.05, **kw)


# ------------------------------------------------------------------------------- fencing
def test_a_worker_whose_claim_was_deleted_stops_before_its_next_write(tmp_path):
    """The claim file deleted mid-job, a second worker claims the same generation: the first
    stops at its next checkpoint, writing nothing more (neither checkpoint nor result)."""
    plan = plan_of(tmp_path / "data")
    job = plan.jobs[0]
    ledger = Ledger(tmp_path / "r", lease_s=60)
    ledger.ensure()
    claim_a = ledger.try_claim(job.job_id, Worker("A"), None)
    at_step_2, go = threading.Event(), threading.Event()
    written: list[int] = []

    def job_fn(job, ctx):
        for step in range(1, 6):
            ctx.check_owner()            # the fencing check, before every checkpoint
            written.append(step)
            if step == 2:
                at_step_2.set()
                go.wait(10)
        ctx.check_owner()
        return writing_job(job, ctx)

    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(run_claimed(
        job, claim_a, "ready", ledger, tmp_path / "data", job_fn=job_fn, heartbeat_s=0.05,
        out=lambda msg: None)))
    thread.start()
    assert at_step_2.wait(10)
    os.unlink(ledger.claims / f"{job.job_id}.0.claim")
    claim_b = ledger.try_claim(job.job_id, Worker("B"), None)
    assert claim_b is not None and claim_b.gen == claim_a.gen and claim_b.token != claim_a.token
    go.set()
    thread.join(10)
    assert outcome == ["lost"] and written == [1, 2]
    assert not ledger.result_path(job.job_id).exists()
    assert not (ledger.failed / f"{job.job_id}.json").exists()
    # the first owner's release did not write over the new owner's heartbeat
    beat = json.loads((ledger.beats / f"{job.job_id}.0.json").read_text())
    assert beat["token"] == claim_a.token and beat["released"] is False
    assert ledger.owns(claim_b) and not ledger.owns(claim_a)


def test_a_worker_that_lost_its_claim_never_writes_its_result(tmp_path):
    plan = plan_of(tmp_path / "data")
    job = plan.jobs[0]
    ledger = Ledger(tmp_path / "r")
    ledger.ensure()
    claim = ledger.try_claim(job.job_id, Worker("A"), None)

    def job_fn(job, ctx):
        os.unlink(ledger.claims / f"{job.job_id}.0.claim")   # gone while it computed
        return writing_job(job, ctx)

    assert run_claimed(job, claim, "ready", ledger, tmp_path / "data", job_fn=job_fn,
                       out=lambda msg: None) == "lost"
    assert not ledger.result_path(job.job_id).exists()
    claim = ledger.try_claim(job.job_id, Worker("A"), None)   # the other branch: kept
    assert run_claimed(job, claim, "ready", ledger, tmp_path / "data", job_fn=writing_job,
                       out=lambda msg: None) == "done"
    assert ledger.is_done(job.job_id)


# ---------------------------------------------------------------------- the done check
def test_results_record_predictions_digests_and_a_changed_file_is_run_again(tmp_path):
    plan = plan_of(tmp_path / "data")
    out = tmp_path / "r"
    calls: list[str] = []
    assert run(plan, out, counting(calls)) == 0
    first = plan.jobs[0]
    result = json.loads((out / first.job_id / "result.json").read_text())
    assert result["experiment_id"] == first.job_id   # stamped by the executor
    task = first.tasks[0]
    pred = out / first.job_id / "predictions" / f"{task}.parquet"
    import hashlib
    assert result["per_task"][task]["predictions_sha256"] == hashlib.sha256(
        pred.read_bytes()).hexdigest()
    calls.clear()
    assert run(plan, out, counting(calls)) == 0 and calls == []   # untouched: nothing reruns
    pred.write_bytes(pred.read_bytes()[:-3])   # truncated
    assert done_count(plan, out) == len(plan.jobs) - 1
    said: list[str] = []
    assert run_plan(plan, out, job_fn=counting(calls), out=said.append, heartbeat_s=0.2,
                    poll_s=0.05) == 0
    assert calls == [first.job_id]
    assert any(line.startswith(f"warning: {first.job_id}/result.json does not prove the job "
                               f"done (predictions/{task}.parquet is not the file its result "
                               "recorded (sha256 differs)); moved to result.corrupt-")
               for line in said)


def test_an_empty_result_is_not_done(tmp_path):
    plan = plan_of(tmp_path / "data")
    out = tmp_path / "r"
    assert run(plan, out, writing_job) == 0
    job = plan.jobs[0]
    assert done_count(plan, out) == len(plan.jobs)
    (out / job.job_id / "result.json").write_text("{}")
    assert done_count(plan, out) == len(plan.jobs) - 1
    (out / plan.jobs[1].job_id / "result.json").write_text("{not json")
    assert done_count(plan, out) == len(plan.jobs) - 2   # status no longer counts it as done
    calls: list[str] = []
    assert run(plan, out, counting(calls)) == 0
    assert sorted(calls) == sorted([job.job_id, plan.jobs[1].job_id])


# ------------------------------------------------------------------- links and permissions
def test_a_linked_job_folder_or_result_is_refused_before_any_write(tmp_path):
    plan = plan_of(tmp_path / "data")
    out = tmp_path / "r"
    out.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    job = plan.jobs[0]
    (out / job.job_id).symlink_to(outside)
    with pytest.raises(InputError, match="a symbolic link .*writes only inside the results"):
        run(plan, out, writing_job)
    assert list(outside.iterdir()) == []
    (out / job.job_id).unlink()
    (out / job.job_id).mkdir()
    (out / job.job_id / "result.json").symlink_to("/dev/zero")
    with pytest.raises(InputError, match="result.json: a symbolic link \\(to /dev/zero\\)"):
        run(plan, out, writing_job)
    (out / job.job_id / "result.json").unlink()
    # a link inside the job's folder (its log, its checkpoints) fails that job only
    victim = outside / "victim.txt"
    victim.write_text("untouched\n")
    (out / job.job_id / "log.txt").symlink_to(victim)
    assert run(plan, out, writing_job) == 1
    assert victim.read_text() == "untouched\n"
    assert Ledger(out).failure(job.job_id)["reason"] == (
        f"{out / job.job_id / 'log.txt'}: a symbolic link (to {victim}); the runner writes "
        "only inside the results folder: remove the link")
    (out / job.job_id / "log.txt").unlink()
    assert run(plan, out, writing_job, retry_failed=True) == 0


def _finished_study(base: Path):
    plan = plan_of(base / "data")
    out = base / "r"
    assert run(plan, out, writing_job) == 0
    for p in [out, *out.rglob("*")]:
        p.chmod(0o777 if p.is_dir() else 0o666)
    return plan, out


def _as_nobody(fn):
    """``fn()`` as uid nobody: "ok" or the one-line error it raised."""
    def call():
        try:
            fn()
            return "ok"
        except InputError as err:
            return f"InputError: {err}"
    return unprivileged(call)


def test_an_unreadable_result_of_a_finished_job_is_bad_input_never_retrained():
    with shared_tmp() as base:
        plan, out = _finished_study(base)
        job = plan.jobs[0]
        calls: list[str] = []
        assert _as_nobody(lambda: run(plan, out, counting(calls))) == "ok"   # readable
        (out / job.job_id / "result.json").chmod(0o000)
        said = _as_nobody(lambda: run(plan, out, counting(calls)))
        assert said == (f"InputError: {out / job.job_id / 'result.json'}: cannot read it "
                        "(Permission denied); fix its permissions (a finished job is never "
                        "trained again for that)")
        assert (out / job.job_id / "result.json").exists()
        assert not list((out / job.job_id).glob("result.corrupt-*"))


def test_an_unreadable_ledger_or_job_folder_is_bad_input_for_status_and_run():
    with shared_tmp() as base:
        plan, out = _finished_study(base)
        assert _as_nobody(lambda: status(plan, out)) == "ok"
        (out / "ledger" / "claims").chmod(0o000)
        for fn in (lambda: status(plan, out), lambda: run(plan, out, writing_job)):
            assert _as_nobody(fn) == (f"InputError: {out / 'ledger' / 'claims'}: cannot read "
                                      "it (Permission denied); fix its permissions")
        (out / "ledger" / "claims").chmod(0o777)
        job = plan.jobs[0]
        (out / job.job_id).chmod(0o000)
        for fn in (lambda: status(plan, out), lambda: run(plan, out, writing_job)):
            assert _as_nobody(fn).startswith(f"InputError: {out / job.job_id}: cannot read it "
                                             "(Permission denied)")


def test_a_read_only_folder_of_an_unfinished_job_fails_that_job_and_frees_its_claim():
    with shared_tmp() as base:
        plan = plan_of(base / "data")
        out = base / "r"
        Ledger(out).ensure()
        job = plan.jobs[0]
        (out / job.job_id).mkdir()
        for p in [out, *out.rglob("*")]:
            p.chmod(0o777)
        (out / job.job_id).chmod(0o555)   # started once, now read-only

        def go():
            return run(plan, out, writing_job)
        assert unprivileged(go) == 1                # that job failed, the run went on
        ledger = Ledger(out)
        failure = ledger.failure(job.job_id)["reason"]
        assert failure == (f"{out / job.job_id}: cannot write the job's folder (Permission "
                           "denied)")
        snap = ledger.snapshot([j.job_id for j in plan.jobs])
        assert snap.claims[job.job_id].status == "released"
        independent = [j for j in plan.jobs if not j.depends_on and j.job_id != job.job_id]
        assert all(j.job_id in snap.done for j in independent)


# ------------------------------------------------------------------------ smaller ones
def test_a_job_without_a_checkpoint_says_starting_not_resuming(tmp_path):
    plan = plan_of(tmp_path / "data")
    out = tmp_path / "r"
    job = plan.jobs[0]
    (out / job.job_id).mkdir(parents=True)   # killed before its first checkpoint
    said: list[str] = []
    run_plan(plan, out, job_fn=writing_job, out=said.append, heartbeat_s=0.2, poll_s=0.05)
    assert any(line.startswith(f"starting {job.job_id}") for line in said)
    other = plan.jobs[1]
    (out / "again" / other.job_id / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    said.clear()
    run_plan(plan, out / "again", job_fn=writing_job, out=said.append, heartbeat_s=0.2,
             poll_s=0.05)
    assert any(line.startswith(f"resuming {other.job_id}") for line in said)


def test_a_full_disk_is_named_as_one(tmp_path):
    torch_like = RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos "
                              "128 vs 64\nPytorchStreamWriter failed writing file data/0: "
                              "file write failed")
    reason = _space_hint(torch_like, tmp_path, f"RuntimeError: {torch_like}")
    assert reason.startswith(f"no space left to write in {tmp_path} (") and \
        " MB free on its disk): RuntimeError: [enforce fail" in reason
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise ValueError("saving failed") from exc
    except ValueError as chained:
        assert _space_hint(chained, tmp_path, "ValueError: saving failed").startswith(
            "no space left to write in")
    other = RuntimeError("shape mismatch")
    assert _space_hint(other, tmp_path, "RuntimeError: shape mismatch") == \
        "RuntimeError: shape mismatch"
    # through the executor: the failure record (and status) name the space
    plan = plan_of(tmp_path / "data")

    def full(job, ctx):
        raise torch_like

    assert run(plan, tmp_path / "r", full) == 1
    reason = Ledger(tmp_path / "r").failure(plan.jobs[0].job_id)["reason"]
    assert reason.startswith(f"no space left to write in {tmp_path / 'r' / plan.jobs[0].job_id}")


def test_sigterm_stops_the_start_loop(tmp_path, monkeypatch):
    """--workers N: a signal that arrives while the workers start stops the starting."""
    plan = plan_of(tmp_path / "data")
    started: list[int] = []
    real_start = workers._Children.start

    def start(self, slot, args, log_path, env):
        real_start(self, slot, args, log_path, env)
        started.append(1)
        if len(started) == 2:
            self.forward(signal.SIGTERM, None)   # as the handler would on SIGTERM

    monkeypatch.setattr(workers._Children, "start", start)
    said: list[str] = []
    workers.run_workers(plan, tmp_path / "r", [], workers=6,
                        command=[sys.executable, "-c", "pass"], out=said.append)
    assert len(started) == 2
    assert "stopped starting workers after 2 of 6 (SIGTERM)" in said
