"""A job's states, folded from one ledger snapshot; what a finished run's states mean as an
exit code; and how a run takes SIGINT / SIGTERM -- for the three executors (local,
--workers N, Ray) alike.

Job states (``status`` and ``plan`` print them):
    done         result.json exists
    failed       a failure record exists (retried only with --retry-failed)
    running      claimed by a live worker
    stale        claimed by a worker that stopped heartbeating: will be taken over
    interrupted  started earlier and stopped (checkpoint kept): will resume
    blocked      a job it depends on failed
    ready        its dependencies are done (or it has none)
    pending      waits for a dependency that is not done yet
"""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mtl_contract.schema import EXIT_FAILED, EXIT_OK, EXIT_TIME_BUDGET
from runner.orchestrate.ledger import Ledger, Snapshot

STATES = ("pending", "ready", "blocked", "running", "stale", "interrupted", "done", "failed")
RUNNABLE = ("ready", "stale", "interrupted")   # a claim starts or resumes these
UNFINISHED = ("running", "pending", "ready", "stale", "interrupted")   # not done, not stuck
RESUME_HINT = "run the same command again to resume"


def is_runnable(state: str, retry_failed: bool = False) -> bool:
    """Whether a claim may take a job in ``state`` (a failed one only with --retry-failed)."""
    return state in RUNNABLE or (state == "failed" and retry_failed)


def any_unfinished(states) -> bool:
    return any(s in UNFINISHED for s in states)


def exit_outcome(summary: str, counts: Counter, n_jobs: int, *, signal: str | None = None,
            budget: bool = False, left: bool = False) -> tuple[str, int]:
    """The closing message and exit code of a run: interrupted or out of time -> 3 (resume
    by running again), a failed or blocked job -> 1, unfinished jobs left -> 3, else 0."""
    if signal is not None:
        return f"{summary}\ninterrupted ({signal}): {RESUME_HINT}", EXIT_TIME_BUDGET
    if budget:
        return f"{summary}\ntime budget reached: {RESUME_HINT}", EXIT_TIME_BUDGET
    if counts.get("failed") or counts.get("blocked"):
        return (f"{summary}\nsome jobs failed: see `python -m runner status`; rerun with "
                f"--retry-failed to retry them"), EXIT_FAILED
    if left:
        return f"{summary}\n{RESUME_HINT}", EXIT_TIME_BUDGET
    return f"{summary}\nall {n_jobs} jobs done", EXIT_OK


@contextmanager
def stop_signals_to(handler: Callable) -> Iterator[None]:
    """Let ``handler`` take SIGINT and SIGTERM while the block runs, then put the previous
    handlers back.  Only the main thread may set signal handlers: elsewhere (a test's
    thread) the block runs with the handlers as they are."""
    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def job_states(jobs, snap: Snapshot) -> dict[str, str]:
    """The state of every job (see the module docstring) from one ledger snapshot."""
    base: dict[str, str] = {}
    for job in jobs:
        jid = job.job_id
        claim = snap.claims.get(jid)
        if jid in snap.done:
            state = "done"
        elif jid in snap.failed:
            state = "failed"
        elif claim is not None and claim.status == "running":
            state = "running"
        elif claim is not None and claim.status == "stale":
            state = "stale"
        elif claim is not None or jid in snap.started:
            state = "interrupted"
        else:
            state = "ready"
        base[jid] = state
    out: dict[str, str] = {}
    for job in jobs:
        state = base[job.job_id]
        if state == "ready" and job.depends_on:
            deps = [base.get(d, "pending") for d in job.depends_on]
            if any(d in ("failed", "blocked") for d in deps):
                state = "blocked"
            elif any(d != "done" for d in deps):
                state = "pending"
        out[job.job_id] = state
    return out


def counts_line(title: str, counts: Counter, order) -> str:
    """``title: k n, ...`` for the non-zero counts, ``order``'s keys first."""
    keys = [k for k in order if counts.get(k)] + sorted(k for k in counts if k not in order)
    return f"{title}: " + ", ".join(f"{k} {counts[k]}" for k in keys)


def final_states(plan, ledger: Ledger) -> tuple[dict[str, str], Counter]:
    """Every job's state once a run is over, and how many jobs are in each."""
    states = job_states(plan.jobs, ledger.snapshot([j.job_id for j in plan.jobs]))
    return states, Counter(states.values())
