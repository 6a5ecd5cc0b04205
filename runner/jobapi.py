"""The seam between the executor (ledger, workers) and what a job computes.

The executor calls ``job_fn(job, ctx)`` for a claimed job.  The job function

* returns the result dict when the job is finished; the executor writes it atomically as
  ``<job_dir>/result.json`` -- written last, it is the only proof that the job is done;
* raises :class:`JobInterrupted` after it saved a resumable checkpoint, when
  ``ctx.should_stop()`` turned true (time budget, SIGTERM, Ctrl-C); the job stays
  resumable and the command exits with code 3;
* calls ``ctx.check_owner()`` before each write of its state (checkpoint, predictions):
  it raises :class:`JobLost` once the ledger names another owner (or none), and the job
  stops there without writing;
* raises :class:`JobFailed` (or any other exception) when the job cannot succeed; the
  ledger marks it failed with a one-line reason and the other jobs go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class JobInterrupted(Exception):
    """The job checkpointed and stopped early on request; running again resumes it."""


class JobLost(JobInterrupted):
    """The ledger no longer names this worker as the job's owner (``ctx.check_owner()``
    before a write): the job stops without writing and without touching the claim."""


class JobFailed(Exception):
    """The job cannot succeed (NaN loss, missing model, ...); ``str(exc)`` is the reason."""


@dataclass
class JobContext:
    job_dir: Path                      # results/<study>/<job_id>/, exists, owned by this job
    data_dir: Path                     # the prepared data (data/ by default)
    dependency_results: dict[str, dict] = field(default_factory=dict)  # job_id -> result.json
    should_stop: Callable[[], bool] = lambda: False  # poll each step; True -> checkpoint, raise
    deadline: float | None = None      # time.monotonic() seconds at which the budget ends
    heartbeat: Callable[[dict], None] = lambda progress: None  # progress: step, total_steps,
    #                                     tokens, target_tokens, eta_s, phase ... (throttled)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("runner.job"))
    tracking: tuple[str, ...] = ()     # experiment-tracking backends (runner.observe.tracking)
    results_dir: Path | None = None    # the study's results folder (runs: <it>/tracking/)
    # the fencing check: call before writing the job's state (a checkpoint, the predictions);
    # raises JobLost when the ledger no longer names this worker its owner, so a worker whose
    # lease was taken over never overwrites what the new owner writes
    check_owner: Callable[[], None] = lambda: None


class JobFunction(Protocol):
    def __call__(self, job: Any, ctx: JobContext) -> dict: ...
