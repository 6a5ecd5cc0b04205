"""The ledger: exclusive claims, leases, takeover of dead claims, atomic records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

import runner.orchestrate.ledger
from runner.orchestrate.ledger import MACHINE, Ledger, Worker, pid_alive

JOB = "0123456789ab"


def _foreign_claim(ledger: Ledger, job_id: str, gen: int, age_s: float) -> None:
    """A claim left by a worker on another machine that last lived age_s seconds ago."""
    ledger.ensure()
    info = {"job_id": job_id, "gen": gen, "token": "t" * 32, "worker": "other", "host": "far",
            "pid": 1, "machine": "far|boot|pid:[1]", "claimed_at": time.time() - age_s,
            "lease_s": 120.0}
    (ledger.claims / f"{job_id}.{gen}.claim").write_text(json.dumps(info))


def test_a_claim_is_exclusive(tmp_path):
    ledger = Ledger(tmp_path)
    a = ledger.try_claim(JOB, Worker("a"), None)
    assert a is not None and a.gen == 0
    assert ledger.try_claim(JOB, Worker("b"), None) is None
    snap = ledger.snapshot([JOB])
    assert snap.claims[JOB].status == "running" and snap.claims[JOB].info["worker"] == "a"
    assert ledger.try_claim(JOB, Worker("b"), snap.claims[JOB]) is None


def test_an_expired_claim_is_taken_over_and_the_old_owner_learns_it(tmp_path):
    ledger = Ledger(tmp_path, lease_s=120)
    _foreign_claim(ledger, JOB, 0, age_s=10)
    assert ledger.snapshot([JOB]).claims[JOB].status == "running"
    _foreign_claim(ledger, JOB, 0, age_s=500)
    seen = ledger.snapshot([JOB]).claims[JOB]
    assert seen.status == "stale"
    claim = ledger.try_claim(JOB, Worker("b"), seen)
    assert claim is not None and claim.gen == 1
    assert ledger.snapshot([JOB]).claims[JOB].info["worker"] == "b"
    # the heartbeat keeps a claim alive past its claimed_at + lease
    ledger.heartbeat(claim, {"step": 3})
    now_state = ledger.snapshot([JOB]).claims[JOB]
    assert now_state.status == "running" and now_state.progress == {"step": 3}
    later = Ledger(tmp_path, lease_s=0.2)
    time.sleep(0.3)
    # the lease recorded in the claim counts, not the reader's setting
    assert later.snapshot([JOB]).claims[JOB].status == "running"


def test_two_takers_of_one_stale_claim_never_both_win(tmp_path):
    for round_ in range(40):
        job = f"{round_:012x}"
        ledger = Ledger(tmp_path)
        _foreign_claim(ledger, job, 0, age_s=1000)
        seen = ledger.snapshot([job]).claims[job]
        wins = []
        barrier = threading.Barrier(4)

        def take(name, job=job, seen=seen, wins=wins, barrier=barrier):
            barrier.wait()
            if Ledger(tmp_path).try_claim(job, Worker(name), seen) is not None:
                wins.append(name)
        threads = [threading.Thread(target=take, args=(f"w{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1, wins


def test_a_dead_local_process_frees_its_claim_without_waiting_for_the_lease(tmp_path):
    ledger = Ledger(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    ledger.ensure()
    info = {"job_id": JOB, "gen": 0, "token": "x", "worker": "dead", "pid": proc.pid,
            "machine": MACHINE, "claimed_at": time.time(), "lease_s": 120.0}
    (ledger.claims / f"{JOB}.0.claim").write_text(json.dumps(info))
    assert ledger.snapshot([JOB]).claims[JOB].status == "stale"


@pytest.mark.parametrize("vanished", [FileNotFoundError, ProcessLookupError])
def test_a_zombie_reaped_between_the_two_looks_is_dead(vanished, monkeypatch):
    """kill(pid, 0) still finds the zombie, then its new parent reaps it before
    /proc/<pid>/stat is read (ENOENT or ESRCH): dead, not "alive" by default."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()                                   # exited and reaped: the pid is free
    real_kill, kills = os.kill, []

    def kill_once_finds_it(pid, sig):
        kills.append(pid)
        if len(kills) > 1:
            return real_kill(pid, sig)

    class ReapedPath(type(runner.orchestrate.ledger.Path())):
        def read_text(self, *args, **kwargs):
            raise vanished(f"{self} vanished")

    monkeypatch.setattr(runner.orchestrate.ledger.os, "kill", kill_once_finds_it)
    monkeypatch.setattr(runner.orchestrate.ledger, "Path", ReapedPath)
    assert pid_alive(proc.pid) is False
    assert kills == [proc.pid, proc.pid]          # it asked kill() again before deciding
    monkeypatch.undo()
    assert pid_alive(os.getpid()) is True         # the fallback keeps live processes alive
    monkeypatch.setattr(runner.orchestrate.ledger, "Path", ReapedPath)   # e.g. no procfs at all
    assert pid_alive(os.getpid()) is True


def test_release_failure_and_finish(tmp_path):
    ledger = Ledger(tmp_path)
    claim = ledger.try_claim(JOB, Worker("a"), None)
    ledger.release(claim, {"step": 2})
    seen = ledger.snapshot([JOB]).claims[JOB]
    assert seen.status == "released"
    again = ledger.try_claim(JOB, Worker("b"), seen)
    assert again is not None and again.gen == 1 and ledger.lost(claim)
    ledger.record_failure(JOB, "boom\nsecond line", "b")
    assert ledger.snapshot([JOB]).failed == {JOB}
    assert ledger.failure(JOB)["reason"] == "boom second line"
    ledger.write_result(JOB, {"ok": 1})
    ledger.finish(JOB)
    snap = ledger.snapshot([JOB])
    assert snap.done == {JOB} and not snap.claims and not snap.failed
    assert not list(ledger.claims.iterdir())


def test_stray_temporary_files_and_corrupt_results_are_tolerated(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.ensure()
    (ledger.claims / f".{JOB}.0.claim.x.tmp").write_text("{half")
    (ledger.failed / f".{JOB}.json.y.tmp").write_text("")
    (ledger.beats / f"{JOB}.0.json").write_text("{half")
    snap = ledger.snapshot([JOB])
    assert not snap.claims and not snap.failed and not snap.done
    (tmp_path / JOB).mkdir()
    (tmp_path / JOB / "result.json").write_text('{"truncated": ')
    assert not ledger.is_done(JOB)
    moved, why = ledger.set_aside_corrupt_result(JOB)
    assert moved.exists() and not ledger.result_path(JOB).exists()
    assert why == "does not parse (JSONDecodeError)"


def test_a_slow_old_owners_last_heartbeat_does_not_hide_its_successors(tmp_path):
    """Generation 0 loses the job to generation 1 and then (slow) writes one more heartbeat:
    generation 1's heartbeat -- its time and progress -- is still what readers see."""
    ledger = Ledger(tmp_path, lease_s=120)
    old = ledger.try_claim(JOB, Worker("a"), None)
    ledger.heartbeat(old, {"step": 1}, released=True)          # a's release: free to take
    new = ledger.try_claim(JOB, Worker("b"), ledger.snapshot([JOB]).claims[JOB])
    assert new is not None and new.gen == 1
    ledger.heartbeat(new, {"step": 7})
    ledger.heartbeat(old, {"step": 2})                          # the old owner, late
    state = ledger.snapshot([JOB]).claims[JOB]
    assert state.gen == 1 and state.status == "running" and state.progress == {"step": 7}
    ledger.write_result(JOB, {"ok": 1})
    ledger.finish(JOB)
    assert not [p for p in ledger.beats.iterdir() if not p.name.startswith(".")]


def test_a_ledger_with_one_heartbeat_file_per_job_is_still_read(tmp_path):
    """Heartbeats written by the previous layout (<job_id>.json) keep their claim alive."""
    ledger = Ledger(tmp_path, lease_s=120)
    _foreign_claim(ledger, JOB, 0, age_s=500)                   # past its lease by claim time
    (ledger.beats / f"{JOB}.json").write_text(json.dumps(
        {"gen": 0, "token": "t" * 32, "worker": "other", "time": time.time(),
         "progress": {"step": 4}, "released": False}))
    state = ledger.snapshot([JOB]).claims[JOB]
    assert state.status == "running" and state.progress == {"step": 4}
    ledger.finish(JOB)
    assert not (ledger.beats / f"{JOB}.json").exists()


def test_files_are_abandoned_at_once_only_when_every_earlier_owner_is_gone(tmp_path):
    """How long a temporary file in a job's folder must sit untouched before its new owner
    may remove it: at once when no earlier owner can be writing, else a whole lease."""
    ledger = Ledger(tmp_path, lease_s=30)
    first = ledger.try_claim(JOB, Worker("a"), None)
    assert ledger.abandoned_after_s(first) == 0.0                # nobody before it
    ledger.release(first)
    second = ledger.try_claim(JOB, Worker("b"), ledger.snapshot([JOB]).claims[JOB])
    assert ledger.abandoned_after_s(second) == 0.0               # the first one released
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    info = json.loads((ledger.claims / f"{JOB}.1.claim").read_text())
    (ledger.claims / f"{JOB}.1.claim").write_text(json.dumps({**info, "pid": dead.pid}))
    third = ledger.try_claim(JOB, Worker("c"), ledger.snapshot([JOB]).claims[JOB])
    assert third is not None and ledger.abandoned_after_s(third) == 0.0   # its process died
    ledger.release(third)
    # an owner on another machine whose lease expired may still be finishing a write
    _foreign_claim(ledger, JOB, 3, age_s=500)
    fourth = ledger.try_claim(JOB, Worker("d"), ledger.snapshot([JOB]).claims[JOB])
    assert fourth is not None and ledger.abandoned_after_s(fourth) == 120.0
