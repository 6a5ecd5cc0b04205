"""A job's states, what a finished run's states mean as an exit code, and how a run takes
SIGINT / SIGTERM, for the three executors (local, --workers N, Ray) alike."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mtl_contract.schema import EXIT_FAILED, EXIT_OK, EXIT_TIME_BUDGET

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
