"""Run a plan's jobs through the ledger: each job once, resumable, within a time budget.

``run_plan`` loops (``_ClaimLoop``): take one look at the ledger, start the first ready job
in plan order that this worker can claim, repeat.  When nothing is ready but jobs are
running elsewhere (or wait on jobs running elsewhere) it polls.  Any number of workers --
processes or machines sharing the results folder -- may run the same plan at once.

The job states are runner/orchestrate/states.py's, one attempt at a job is
runner/orchestrate/attempt.py's, and the study ETA printed before each job is
runner/orchestrate/report.py's.
"""

from __future__ import annotations

import math
import os
import re
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from runner.errors import InputError
from runner.orchestrate.attempt import JobFn, RunContext, prune_checkpoints, run_one
from runner.orchestrate.ledger import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_LEASE_S,
    Claim,
    Ledger,
    Snapshot,
    Worker,
)
from runner.orchestrate.report import StudyEta
from runner.orchestrate.states import (
    STATES,
    any_unfinished,
    counts_line,
    exit_outcome,
    final_states,
    is_runnable,
    job_states,
    stop_signals_to,
)
from runner.study.plan import Job, Plan

_BUDGET_RE = re.compile(r"(\d+(?:\.\d+)?)([hms])")


def parse_time_budget(text: str) -> float:
    """'11h30m', '45m', '90s', '1.5h' or plain seconds -> seconds."""
    s = str(text).strip().lower()
    if s.startswith("-"):
        raise InputError(None, f"expected a positive duration, got {text!r}",
                         where="--time-budget")
    try:
        value = float(s)
    except ValueError:
        pos, total = 0, 0.0
        for m in _BUDGET_RE.finditer(s):
            if m.start() != pos:
                break
            total += float(m.group(1)) * {"h": 3600, "m": 60, "s": 1}[m.group(2)]
            pos = m.end()
        if pos != len(s) or not s:
            raise InputError(None, f"expected a duration like 11h30m, 45m or 90s, got {text!r}",
                             where="--time-budget") from None
        value = total
    if not math.isfinite(value) or value <= 0:
        raise InputError(None, f"expected a positive duration, got {text!r}",
                         where="--time-budget")
    return value


def safety_margin_s(budget_s: float) -> float:
    """Seconds before the budget's end at which running jobs are told to checkpoint:
    2% of the budget but at least 60 s, and never more than a tenth of the budget."""
    return min(max(60.0, 0.02 * budget_s), 0.1 * budget_s)



class _Stop:
    """should_stop(): a signal arrived, the budget is nearly spent, or the lease was lost."""

    def __init__(self, stop_at: float | None):
        self.stop_at = stop_at          # time.monotonic() seconds
        self.signal: str | None = None

    def budget_spent(self) -> bool:
        return self.stop_at is not None and time.monotonic() >= self.stop_at

    def __call__(self) -> bool:
        return self.signal is not None or self.budget_spent()

    def on_signal(self, signum, frame) -> None:
        """SIGINT/SIGTERM: the first one asks the job to checkpoint and stop, a second one
        stops now, without checkpointing."""
        if self.signal is not None:
            raise KeyboardInterrupt
        # No printing here: a signal may arrive in the middle of another print.
        self.signal = signal.Signals(signum).name



def _prune_done_jobs(plan: Plan, ledger: Ledger) -> None:
    """Prune the checkpoints of done jobs where a kill came between result.json and the
    pruning (another worker pruning the same job at the same time is harmless)."""
    for job in plan.jobs:
        if ledger.result_path(job.job_id).exists():
            prune_checkpoints(ledger.job_dir(job.job_id),
                              job.settings.keep_weights is not False)



def manifest_tracking(plan: Plan) -> tuple[str, ...]:
    """The manifest's ``[study] tracking`` backends (none without a manifest)."""
    return tuple(getattr(getattr(plan.manifest, "study", None), "tracking", ()) or ())


def set_aside_corrupt_results(ledger: Ledger, ids: Sequence[str], say: Callable[[str], None],
                              then: str = "") -> None:
    """Move each result.json that does not prove its job done (does not parse, names another
    job, its predictions' digests differ) out of the way, and warn; ``then`` ends the
    warning (what becomes of the job).  A job folder that is a symbolic link, or a
    result.json that cannot be read, is bad input (InputError): nothing is written
    outside the results folder, and a finished job is never trained again for a
    permission."""
    for jid in ids:
        job_dir = ledger.job_dir(jid)
        if job_dir.is_symlink():
            raise InputError(str(job_dir), f"a symbolic link (to {os.path.realpath(job_dir)}); "
                             "the runner writes only inside the results folder: replace the "
                             "link by the folder itself")
        moved = ledger.set_aside_corrupt_result(jid)
        if moved is not None:
            dest, why = moved
            say(f"warning: {jid}/result.json does not prove the job done ({why}); moved to "
                f"{dest.name}{then}")



def run_plan(plan: Plan, results_dir: str | Path, *, job_fn: JobFn,
             time_budget_s: float | None = None, retry_failed: bool = False,
             worker_id: str | None = None, lease_s: float = DEFAULT_LEASE_S,
             heartbeat_s: float = DEFAULT_HEARTBEAT_S, poll_s: float = 5.0,
             out: Callable[[str], None] | None = None,
             tracking: Sequence[str] | None = None, bar_position: int = 0) -> int:
    """Run every job of ``plan`` that is not done with ``job_fn`` (the training engine from
    ``python -m runner``, a stand-in in tests); return the exit code (0, 1 or 3).
    ``tracking``: experiment-tracking backends (None: the manifest's ``[study] tracking``);
    ``bar_position``: the line of this worker's progress bar on a shared terminal.

    The claim loop is ``_ClaimLoop``; the exit code is runner.orchestrate.states.exit_outcome."""
    say = out or (lambda msg: print(msg, flush=True))
    deadline = None if time_budget_s is None else time.monotonic() + time_budget_s
    stop = _Stop(None if deadline is None else deadline - safety_margin_s(time_budget_s))
    ledger = Ledger(results_dir, lease_s=lease_s)
    ledger.ensure()
    worker = Worker(worker_id or Worker.default_id())
    set_aside_corrupt_results(ledger, [j.job_id for j in plan.jobs], say,
                              then=", the job runs again")
    _prune_done_jobs(plan, ledger)
    run = RunContext(ledger=ledger, data_dir=plan.data_dir, job_fn=job_fn, should_stop=stop,
                      deadline=deadline, heartbeat_s=heartbeat_s, durations=ledger.durations(),
                      say=say, bar_position=bar_position,
                      tracking=manifest_tracking(plan) if tracking is None else tuple(tracking))
    loop = _ClaimLoop(plan, worker, stop, run, retry_failed=retry_failed, poll_s=poll_s)
    with stop_signals_to(stop.on_signal):
        stopped_for_budget = loop.run_jobs()

    _, counts = final_states(plan, ledger)
    message, code = exit_outcome(counts_line("jobs", counts, STATES), counts,
                                 len(plan.jobs), signal=stop.signal, budget=stopped_for_budget)
    say(message)
    return code


class _ClaimLoop:
    """``run_plan``'s loop: take one look at the ledger, run the first job in plan order that
    this worker can claim, repeat; poll while the jobs left run (or wait on jobs running)
    elsewhere.  Stops on a signal, near the budget's end, or when no job is left to it."""

    def __init__(self, plan: Plan, worker: Worker, stop: _Stop, run: RunContext, *,
                 retry_failed: bool, poll_s: float):
        self.plan, self.worker, self.stop, self.run = plan, worker, stop, run
        self.ledger = run.ledger
        self.ids = [j.job_id for j in plan.jobs]
        self.retry_failed, self.poll_s = retry_failed, poll_s
        self.retried: set[str] = set()   # failed jobs retried once already (--retry-failed)
        self.eta = StudyEta(plan, run.ledger)

    def run_jobs(self) -> bool:
        """Run jobs until none is left to this worker; True if it stopped for the budget."""
        while True:
            if self.stop():
                return self.stop.signal is None
            snap = self.ledger.snapshot(self.ids)
            states = job_states(self.plan.jobs, snap)
            picked, skipped_for_time = self._claim_first(snap, states)
            if picked is not None:
                job, claim, state = picked
                if state == "failed":
                    self.retried.add(job.job_id)
                outcome = run_one(job, claim, state, self.run,
                                   study_line=self.eta.line(snap, job.job_id))
                if outcome == "interrupted":
                    return self.stop.signal is None
                continue
            if skipped_for_time:
                self.run.say("no remaining job can finish within the time budget")
                return True
            if not any_unfinished(states.values()):
                return False
            # Jobs run elsewhere (or wait on jobs that do): poll until they finish.
            end = time.monotonic() + self.poll_s
            while time.monotonic() < end and not self.stop():
                time.sleep(min(0.2, self.poll_s))

    def _claim_first(self, snap: Snapshot, states: dict[str, str]
                     ) -> tuple[tuple[Job, Claim, str] | None, bool]:
        """The first runnable job in plan order that this worker claimed (job, claim, state
        when claimed), or None; and whether a runnable job was passed over for lack of time."""
        skipped_for_time = False
        for job in self.plan.jobs:
            state = states[job.job_id]
            if not is_runnable(state, self.retry_failed and job.job_id not in self.retried):
                continue
            if not self._fits_the_budget(job):
                skipped_for_time = True
                continue
            claim = self.ledger.try_claim(job.job_id, self.worker, snap.claims.get(job.job_id))
            if claim is not None:
                return (job, claim, state), skipped_for_time
        return None, skipped_for_time

    def _fits_the_budget(self, job: Job) -> bool:
        """Whether ``job`` can finish before the stop time, judged by the mean duration of its
        experiment's finished jobs (True without a budget or before any has finished)."""
        past = self.run.durations.get(job.experiment)
        if self.run.deadline is None or not past:
            return True
        estimate = sum(past) / len(past)   # seconds, same experiment
        return not time.monotonic() + estimate > self.stop.stop_at
