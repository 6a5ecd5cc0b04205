"""Run a plan's jobs through the ledger: each job once, resumable, within a time budget.

``run_plan`` loops: take one look at the ledger, start the first ready job in plan order
that this worker can claim, repeat.  When nothing is ready but jobs are running elsewhere
(or wait on jobs running elsewhere) it polls.  Any number of workers -- processes or
machines sharing the results folder -- may run the same plan at once.

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

import errno
import logging
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mtl_contract.files import remove_temp_files, sha256_file
from runner.errors import InputError
from runner.jobapi import JobContext, JobFailed, JobInterrupted, JobLost
from runner.observe.progress import (
    JobProgress,
    RateMeter,
    fmt_duration,
    status_eta,
    status_rows,
    study_eta,
    study_line,
)
from runner.orchestrate.ledger import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_LEASE_S,
    Claim,
    Ledger,
    Snapshot,
    Worker,
)
from runner.orchestrate.states import (
    STATES,
    any_unfinished,
    exit_outcome,
    is_runnable,
    stop_signals_to,
)
from runner.study.models import missing_libraries
from runner.study.plan import Job, Plan
from runner.study.strategies import STRATEGIES

JobFn = Callable[[Job, JobContext], dict]


# ------------------------------------------------------------------------ helpers
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


def _fmt_s(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _counts_line(title: str, counts: Counter, order) -> str:
    keys = [k for k in order if counts.get(k)] + sorted(k for k in counts if k not in order)
    return f"{title}: " + ", ".join(f"{k} {counts[k]}" for k in keys)


def format_plan(plan: Plan, states: dict[str, str]) -> str:
    """The job table, then counts per strategy and per state, and the total."""
    header = ("job_id", "experiment", "strategy", "model", "tasks", "seed", "depends_on",
              "state")
    rows = [(j.job_id, j.experiment, j.strategy, j.model, "+".join(j.tasks), str(j.seed),
             ",".join(j.depends_on) or "-", states[j.job_id]) for j in plan.jobs]
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header).rstrip()]
    lines.extend(fmt.format(*row).rstrip() for row in rows)
    lines.append("")
    lines.append(_counts_line("per strategy", Counter(j.strategy for j in plan.jobs),
                              tuple(STRATEGIES)))
    lines.append(_counts_line("per state", Counter(states.values()), STATES))
    lines.append(f"total: {len(plan.jobs)} jobs")
    return "\n".join(lines)


def job_sizes(plan: Plan) -> dict[str, float]:
    """Planned real training tokens per job (runner.observe.estimate), the study ETA's unit
    of work; {} when the data's token counts are missing (the ETA then counts mean jobs)."""
    if plan.manifest is None:
        return {}
    from runner.observe.estimate import job_sizes as sizes
    try:
        return {s.job_id: s.train_tokens for s in sizes(plan)}
    except Exception:  # noqa: BLE001 -- an ETA never stops a command
        return {}


class _StudyEta:
    """The study's ETA from the measured speed of its finished jobs (ledger durations) and the
    running jobs' own ETAs (their heartbeats), shared by the workers running now."""

    def __init__(self, plan: Plan, ledger: Ledger, sizes: dict[str, float] | None = None,
                 use_sizes: bool = True):
        self.plan, self.ledger = plan, ledger
        self._sizes, self.use_sizes = sizes, use_sizes

    @property
    def sizes(self) -> dict[str, float]:   # computed once, and only once a job has finished
        if self._sizes is None:
            self._sizes = job_sizes(self.plan)
        return self._sizes

    def seconds(self, snap: Snapshot, states: dict[str, str],
                starting: str | None = None) -> float | None:
        finished = self.ledger.job_durations()
        if not finished:
            return None
        running = [jid for jid, st in states.items() if st == "running" and jid != starting]
        pending = [jid for jid, st in states.items()   # failed/blocked ones do not run
                   if jid == starting or st in ("ready", "pending", "interrupted", "stale")]
        now = snap.taken_at
        left = [status_eta(snap.claims[j].progress, snap.claims[j].last_beat, now,
                           snap.claims[j].info.get("claimed_at")) for j in running]
        workers = len({snap.claims[j].info.get("worker") for j in running}
                      | ({"me"} if starting else set())) or 1
        if self._sizes is None and not self.use_sizes:
            # `status`: no token projection (0.5 s at 10,000 jobs); a pending job counts the
            # mean duration of its experiment's finished jobs (of all finished jobs if none)
            per_exp: dict[str, list[float]] = {}
            for exp, sec in finished.values():
                per_exp.setdefault(exp, []).append(sec)
            mean = {e: sum(v) / len(v) for e, v in per_exp.items()}
            exp_of = {j.job_id: j.experiment for j in self.plan.jobs}
            return study_eta([(sec, mean[exp]) for exp, sec in finished.values()],
                             [mean.get(exp_of[j]) for j in pending], left, workers)
        return study_eta([(sec, self.sizes.get(jid)) for jid, (_, sec) in finished.items()],
                         [self.sizes.get(j) for j in pending], left, workers)

    def line(self, snap: Snapshot, starting: str) -> str:
        states = job_states(self.plan.jobs, snap)
        counts = Counter(states.values())
        running = counts.get("running", 0) + (states.get(starting) != "running")
        return study_line(done=counts.get("done", 0), total=len(self.plan.jobs),
                          running=running, eta_s=self.seconds(snap, states, starting),
                          failed=counts.get("failed", 0))


def _job_eta(progress: dict, last_beat: float, now: float, claimed_at) -> float | None:
    """A running job's ETA: the worker's own (eta_s); for a heartbeat without one but with
    the attempt's elapsed_s, the mean speed over that time; else from the claim's age."""
    elapsed = progress.get("elapsed_s")
    step, total = progress.get("step"), progress.get("total_steps")
    if progress.get("eta_s") is None and isinstance(elapsed, (int, float)) \
            and isinstance(step, (int, float)) and isinstance(total, (int, float)) and step > 0:
        return max(0.0, elapsed * (total - step) / step - max(0.0, now - last_beat))
    return status_eta(progress, last_beat, now, claimed_at)


def format_status(plan: Plan, ledger: Ledger, snap: Snapshot, states: dict[str, str]) -> str:
    """Counts per state, progress of running jobs, failed jobs with their reason."""
    counts = Counter(states.values())
    lines = [f"study {plan.manifest.study.name}: {len(plan.jobs)} jobs in {ledger.root}",
             _counts_line("per state", counts, STATES)]
    running = [j for j in plan.jobs if states[j.job_id] in ("running", "stale")]
    if running:
        lines.append("running:")
    for job in running:
        c = snap.claims[job.job_id]
        p = c.progress
        step, total = p.get("step"), p.get("total_steps")
        tokens, target = p.get("tokens"), p.get("target_tokens")
        eta = _job_eta(p, c.last_beat, snap.taken_at, c.info.get("claimed_at"))
        head = (f"  {job.job_id} {job.experiment} {job.model} {'+'.join(job.tasks)} "
                f"seed {job.seed}: {states[job.job_id]}, worker {c.info.get('worker', '?')}")
        parts = [head]
        if step is not None:
            parts.append(f"step {step}/{total if total is not None else '?'}")
        if tokens is not None:
            parts.append(f"tokens {tokens}" + (f"/{target}" if target is not None else ""))
        if p.get("phase"):
            parts.append(str(p["phase"]))
        parts.append(f"ETA {_fmt_s(eta)}")
        parts.append(f"heartbeat {_fmt_s(snap.taken_at - c.last_beat)} ago")
        lines.append(", ".join(parts))
    failed = [j for j in plan.jobs if states[j.job_id] == "failed"]
    if failed:
        lines.append("failed (rerun with --retry-failed):")
    for job in failed:
        reason = ledger.failure(job.job_id).get("reason", "?")
        lines.append(f"  {job.job_id} {job.experiment} {job.model} {'+'.join(job.tasks)} "
                     f"seed {job.seed}: {reason}")
    blocked = [j for j in plan.jobs if states[j.job_id] == "blocked"]
    if blocked:
        lines.append(f"blocked: {len(blocked)} jobs wait on failed jobs "
                     f"({', '.join(sorted({d for j in blocked for d in j.depends_on}))})")
    if any(st not in ("done", "failed", "blocked") for st in states.values()):
        rest = _StudyEta(plan, ledger, use_sizes=False).seconds(snap, states)
        lines.append(f"rest of the study: ETA {fmt_duration(rest)} (from the measured speed "
                     f"of its finished jobs; ? until one has finished)")
    return "\n".join(lines)


def status_json(plan: Plan, ledger: Ledger, snap: Snapshot, states: dict[str, str]) -> dict:
    """`status --json`: counts per state, the running jobs (worker, step/tokens, heartbeat
    age, ETA), the failed jobs' reasons and the ETA of the rest of the study."""
    running = [j.job_id for j in plan.jobs if states[j.job_id] in ("running", "stale")]
    rows = status_rows([{"job_id": jid, "worker": snap.claims[jid].info.get("worker"),
                         "progress": snap.claims[jid].progress,
                         "last_beat": snap.claims[jid].last_beat,
                         "claimed_at": snap.claims[jid].info.get("claimed_at")}
                        for jid in running], snap.taken_at)
    for row in rows:
        c = snap.claims[row["job_id"]]
        row["state"] = states[row["job_id"]]
        row["eta_s"] = _job_eta(c.progress, c.last_beat, snap.taken_at, c.info.get("claimed_at"))
    left = None
    if any(st not in ("done", "failed", "blocked") for st in states.values()):
        left = _StudyEta(plan, ledger, use_sizes=False).seconds(snap, states)
    return {"study": plan.manifest.study.name, "results_dir": str(ledger.root),
            "total": len(plan.jobs), "counts": dict(Counter(states.values())),
            "running": rows,
            "failed": {j.job_id: ledger.failure(j.job_id).get("reason")
                       for j in plan.jobs if states[j.job_id] == "failed"},
            "study_eta_s": left}


# ---------------------------------------------------------------------- stopping
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


class _Heartbeat(threading.Thread):
    """Renews the claim every ``interval`` seconds with the job's latest progress.

    The owner's last word on a claim (``Ledger.release``: "anyone may take it over now")
    goes to the same heartbeat file, so it must come after this thread's last write:
    ``stop()`` waits for a beat in flight and no beat starts after it.  Without that, a
    beat that woke just before the job stopped could rename its "released": false file
    over the release, and the claim would look held by a live (or, once the process is
    gone, a dead) owner instead of free."""

    def __init__(self, ledger: Ledger, claim: Claim, interval: float, started: float):
        super().__init__(daemon=True, name=f"heartbeat-{claim.job_id}")
        self.ledger, self.claim, self.interval, self.started = ledger, claim, interval, started
        self.progress: dict = {}
        self.lost = False
        self.done = threading.Event()
        self._writing = threading.Lock()   # held for each beat; stop() takes it too

    def beat(self) -> None:
        progress = dict(self.progress)
        progress.setdefault("elapsed_s", round(time.monotonic() - self.started, 1))
        self.ledger.heartbeat(self.claim, progress)

    def stop(self) -> None:
        """No heartbeat is written once this returns (it waits for one in flight)."""
        if self.done.is_set():
            return
        with self._writing:
            self.done.set()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            with self._writing:
                if self.done.is_set():   # stopped while this beat waited for the lock
                    return
                try:
                    if not self.ledger.owns(self.claim):
                        # taken over, or its claim file deleted or replaced (issue 25):
                        # stop at the next check, and never beat over the new owner's
                        self.lost = True
                        return
                    self.beat()
                except OSError as exc:  # a shared folder hiccup: try again next beat
                    logging.getLogger("runner").warning("heartbeat failed: %s", exc)


def _job_logger(job: Job, job_dir: Path) -> tuple[logging.Logger, list[logging.Handler]]:
    logger = logging.getLogger(f"runner.job.{job.job_id}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    file_handler = logging.FileHandler(job_dir / "log.txt", encoding="utf-8")
    file_handler.setFormatter(fmt)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(f"[{job.job_id}] %(message)s"))
    handlers = [file_handler, console]
    for h in handlers:
        logger.addHandler(h)
    return logger, handlers


def verify_job_data(job: Job, data_dir: Path) -> None:
    """Raise InputError when a data file of the job, or its SHA256SUMS line, changed or went
    missing since the plan was made (runner.data.splits.verify_checksums: the one SHA256SUMS reader)."""
    if not job.data_checksums:
        return  # a plan built without data (build_plan's require_data): jobs that read none
    from runner.data.splits import verify_checksums

    found = verify_checksums(data_dir, job.tasks)
    for rel, digest in job.data_checksums.items():
        if found.get(rel) != digest:
            raise InputError(str(Path(data_dir) / rel), "changed since the plan was made")


def prune_checkpoints(job_dir: Path, keep_weights: bool) -> bool:
    """What a done job keeps of ``checkpoints/``: only ``best/`` (``runner evaluate`` and RQ2
    read those weights; ``best.old/`` where a kill left no ``best/``), or nothing with
    keep_weights = false.  Call it only once result.json is on disk: before that, a kill
    resumes from the finished checkpoint instead of retraining.  True if it removed any."""
    root = job_dir / "checkpoints"
    try:
        entries = list(os.scandir(root))
    except OSError:
        return False
    names = {e.name for e in entries}
    keep = set() if not keep_weights else {"best"} if "best" in names else {"best.old"}
    doomed = [e for e in entries if e.name not in keep]
    for entry in doomed:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.unlink(entry.path)
            except OSError:   # gone already, or not removable: the job is done regardless
                pass
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return bool(doomed) or not keep


def _prune_done_jobs(plan: Plan, ledger: Ledger) -> None:
    """Prune the checkpoints of done jobs where a kill came between result.json and the
    pruning (another worker pruning the same job at the same time is harmless)."""
    for job in plan.jobs:
        if ledger.result_path(job.job_id).exists():
            prune_checkpoints(ledger.job_dir(job.job_id),
                              job.settings.keep_weights is not False)


def _remove_stray_temp_files(ledger: Ledger, claim: Claim, job_dir: Path, logger) -> None:
    """Remove what interrupted atomic writes (result.json, predictions, ...) left in the job's
    folder; a file an earlier owner of the job may still be writing stays (see
    Ledger.abandoned_after_s)."""
    removed = remove_temp_files(job_dir, ledger.abandoned_after_s(claim))
    if removed:
        logger.info("removed %d temporary file(s) of interrupted writes: %s", len(removed),
                    ", ".join(str(p.relative_to(job_dir)) for p in removed))


def _default_job_fn() -> JobFn:
    # a missing third-party library is a broken install (bad input); a missing project
    # module is a bug and fails loudly
    missing = missing_libraries(("torch", "transformers"))
    if missing:
        raise InputError(None, f"cannot import the training engine: {', '.join(missing)} "
                         f"missing; install the project (pip install -e .)",
                         where="runner.recipes")
    from runner.recipes.train_job import run_job  # lazily: plan and status never import torch
    return run_job


# -------------------------------------------------------------------------- run
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


def final_states(plan: Plan, ledger: Ledger) -> tuple[dict[str, str], Counter]:
    """Every job's state once a run is over, and how many jobs are in each."""
    states = job_states(plan.jobs, ledger.snapshot([j.job_id for j in plan.jobs]))
    return states, Counter(states.values())


def run_plan(plan: Plan, results_dir: str | Path, *, job_fn: JobFn | None = None,
             time_budget_s: float | None = None, retry_failed: bool = False,
             worker_id: str | None = None, lease_s: float = DEFAULT_LEASE_S,
             heartbeat_s: float = DEFAULT_HEARTBEAT_S, poll_s: float = 5.0,
             out: Callable[[str], None] | None = None,
             tracking: Sequence[str] | None = None, bar_position: int = 0) -> int:
    """Run every job of ``plan`` that is not done; return the exit code (0, 1 or 3).
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
    run = _RunContext(ledger=ledger, data_dir=plan.data_dir, job_fn=job_fn, should_stop=stop,
                      deadline=deadline, heartbeat_s=heartbeat_s, durations=ledger.durations(),
                      say=say, bar_position=bar_position,
                      tracking=manifest_tracking(plan) if tracking is None else tuple(tracking))
    loop = _ClaimLoop(plan, worker, stop, run, retry_failed=retry_failed, poll_s=poll_s)
    with stop_signals_to(stop.on_signal):
        stopped_for_budget = loop.run_jobs()

    _, counts = final_states(plan, ledger)
    message, code = exit_outcome(_counts_line("jobs", counts, STATES), counts,
                                 len(plan.jobs), signal=stop.signal, budget=stopped_for_budget)
    say(message)
    return code


class _ClaimLoop:
    """``run_plan``'s loop: take one look at the ledger, run the first job in plan order that
    this worker can claim, repeat; poll while the jobs left run (or wait on jobs running)
    elsewhere.  Stops on a signal, near the budget's end, or when no job is left to it."""

    def __init__(self, plan: Plan, worker: Worker, stop: _Stop, run: _RunContext, *,
                 retry_failed: bool, poll_s: float):
        self.plan, self.worker, self.stop, self.run = plan, worker, stop, run
        self.ledger = run.ledger
        self.ids = [j.job_id for j in plan.jobs]
        self.retry_failed, self.poll_s = retry_failed, poll_s
        self.retried: set[str] = set()   # failed jobs retried once already (--retry-failed)
        self.eta = _StudyEta(plan, run.ledger)

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
                outcome = _run_one(job, claim, state, self.run,
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
            if self.run.job_fn is None:   # before claiming: a missing engine claims nothing
                self.run.job_fn = _default_job_fn()
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


@dataclass
class _RunContext:
    """What running a claimed job takes from the executor that claimed it (``run_plan``,
    ``run_claimed``)."""
    ledger: Ledger
    data_dir: str | Path
    job_fn: JobFn | None                # None until run_plan first claims (see _ClaimLoop)
    should_stop: Callable[[], bool]     # the executor's stop: a signal, the budget, ...
    deadline: float | None              # time.monotonic() seconds at which the budget ends
    heartbeat_s: float
    durations: dict[str, list[float]]   # experiment -> seconds of its finished jobs; grows
    say: Callable[[str], None]
    tracking: tuple[str, ...] = ()
    bar_position: int = 0


def _run_one(job: Job, claim: Claim, state: str, run: _RunContext,
             study_line: str | None = None) -> str:
    """Run one claimed job; return "done", "failed", "interrupted" or "lost"."""
    if run.ledger.is_done(job.job_id):   # finished by another worker since our snapshot
        run.ledger.finish(job.job_id)
        return "done"
    if state == "failed":
        run.ledger.clear_failure(job.job_id)
    job_dir = run.ledger.job_dir(job.job_id)
    try:
        link = _first_link(job_dir)
        attempt = None if link else _Attempt(job, claim, state, run, study_line)
    except OSError as exc:
        link, attempt = None, None
        reason = f"{job_dir}: cannot write the job's folder ({exc.strerror or exc})"
    if attempt is None:
        # a link inside the job's folder, or a folder that cannot be written (read-only,
        # full): this job fails, its claim is given back, the run goes on with the others
        if link:
            reason = (f"{link}: a symbolic link (to {os.path.realpath(link)}); the runner "
                      "writes only inside the results folder: remove the link")
        run.ledger.record_failure(job.job_id, reason, claim.worker)
        run.ledger.release(claim)
        run.say(f"failed {job.job_id}: {reason}")
        return "failed"
    try:
        attempt.compute()
    except JobInterrupted as exc:
        return attempt.interrupted(exc)
    except (InputError, JobFailed, Exception) as exc:  # noqa: BLE001 -- logged with its traceback
        return attempt.failed(exc)
    except BaseException:
        attempt.beat.stop()
        # Ctrl-C twice: anyone may resume it at once
        run.ledger.release(claim, attempt.beat.progress)
        raise
    finally:
        attempt.close()
    return attempt.finished()


class _Attempt:
    """One attempt at a claimed job: its folder, heartbeat thread, log.txt and progress bar,
    the callbacks the job function polls (``should_stop``) and reports to (``heartbeat``),
    and what each way of ending does to the claim.  Making one opens log.txt and prints
    the "starting|resuming <job>" line."""

    def __init__(self, job: Job, claim: Claim, state: str, run: _RunContext,
                 study_line: str | None):
        self.job, self.claim, self.run = job, claim, run
        self.job_dir = run.ledger.job_dir(job.job_id)
        self.job_dir.mkdir(parents=True, exist_ok=True)
        self.t0 = time.monotonic()
        self.beat = _Heartbeat(run.ledger, claim, run.heartbeat_s, self.t0)
        self.logger, self.handlers = _job_logger(job, self.job_dir)
        # "resuming" only where a checkpoint is there to resume from: a job whose folder
        # holds none (killed before its first one) trains from scratch
        self.verb = "resuming" if state in ("stale", "interrupted") and _has_checkpoint(
            self.job_dir) else "starting"
        self._announce(study_line)
        self.meter = RateMeter()   # adds elapsed_s, rate and eta_s to what the heartbeat file gets
        # a no-op unless on a terminal; made below the lines just printed
        self.bar = JobProgress(job.job_id, position_=run.bar_position)

    def _announce(self, study_line: str | None) -> None:
        job = self.job
        try:
            if study_line:   # "job k of N (...), study ETA ..."
                self.run.say(study_line)
            self.run.say(f"{self.verb} {job.job_id} {job.experiment} {job.strategy} {job.model} "
                         f"{'+'.join(job.tasks)} seed {job.seed}")
        except BaseException:
            # e.g. BrokenPipeError: stdout was closed (`| head`); the job has not started, so
            # give it back at once instead of leaving a claim that only a lease/pid check frees
            self._close_log()
            self.run.ledger.release(self.claim)
            raise

    def should_stop(self) -> bool:
        return self.beat.lost or self.run.should_stop()

    def check_owner(self) -> None:
        """The fencing check before every write of the job's state (each checkpoint, the
        predictions, result.json): JobLost when the ledger no longer names this claim as
        the job's owner -- its claim file deleted or replaced, or taken over."""
        if not self.run.ledger.owns(self.claim):
            self.beat.lost = True
            raise JobLost(f"the ledger no longer names this worker ({self.claim.worker}, "
                          f"claim generation {self.claim.gen}) as the owner of "
                          f"{self.job.job_id}; stopped before writing")

    def heartbeat(self, progress: dict) -> None:
        progress = self.meter.annotate(progress)
        try:
            self.bar.update(progress)
        except Exception:  # noqa: BLE001 -- a progress bar never fails a job
            self.bar.enabled = False
        self.beat.progress = progress

    def compute(self) -> None:
        """Heartbeat, checks, the job function, then result.json and the checkpoints' pruning."""
        job, ledger, logger = self.job, self.run.ledger, self.logger
        self.beat.beat()
        self.beat.start()
        logger.info("job %s (%s, worker %s, claim generation %d)", job.job_id, self.verb,
                    self.claim.worker, self.claim.gen)
        _remove_stray_temp_files(ledger, self.claim, self.job_dir, logger)
        verify_job_data(job, self.run.data_dir)
        ctx = JobContext(job_dir=self.job_dir, data_dir=Path(self.run.data_dir),
                         dependency_results=_dependency_results(job, ledger),
                         should_stop=self.should_stop, deadline=self.run.deadline,
                         heartbeat=self.heartbeat, logger=logger,
                         tracking=self.run.tracking, results_dir=ledger.root,
                         check_owner=self.check_owner)
        result = self.run.job_fn(job, ctx)
        if not isinstance(result, dict):
            raise JobFailed(f"job function returned {type(result).__name__}, expected a dict")
        result = stamp_result(job.job_id, result, self.job_dir)
        self.check_owner()   # fenced: only the job's owner writes its result
        try:
            ledger.write_result(job.job_id, result)
        except (TypeError, ValueError) as exc:
            raise JobFailed(f"result is not JSON-serialisable: {exc}") from None
        keep_weights = job.settings.keep_weights is not False
        if prune_checkpoints(self.job_dir, keep_weights):   # only now that result.json is on disk
            logger.info("checkpoints/ pruned to %s", "best/" if keep_weights else
                        "nothing (keep_weights = false)")

    def interrupted(self, exc: JobInterrupted) -> str:
        """The job checkpointed and stopped: give the claim back ("lost" if it was taken over)."""
        self.beat.stop()
        if self.beat.lost:
            self.logger.info("lost the job: %s", exc)
            self.run.say(f"lost {self.job.job_id}: the ledger names another owner (or none); "
                         "stopped before writing")
            return "lost"
        self.run.ledger.release(self.claim, self.beat.progress)
        self.logger.info("interrupted after %.1f s: %s", time.monotonic() - self.t0, exc)
        self.run.say(f"interrupted {self.job.job_id} (checkpoint kept)")
        return "interrupted"

    def failed(self, exc: Exception) -> str:
        """Record the failure with a one-line reason and give the claim back."""
        self.beat.stop()
        expected = isinstance(exc, (InputError, JobFailed))
        reason = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        reason = _space_hint(exc, self.job_dir, reason)
        self.logger.error("failed: %s", reason, exc_info=not expected)
        self.run.ledger.record_failure(self.job.job_id, reason, self.claim.worker)
        self.run.ledger.release(self.claim)
        self.run.say(f"failed {self.job.job_id}: {' '.join(reason.split())}")
        return "failed"

    def close(self) -> None:
        self.beat.stop()
        self.bar.close()
        self._close_log()

    def _close_log(self) -> None:
        for h in self.handlers:
            self.logger.removeHandler(h)
            h.close()

    def finished(self) -> str:
        """result.json is written: record the duration, end the claim, say so."""
        seconds = time.monotonic() - self.t0
        self.run.ledger.record_duration(self.job.job_id, self.job.experiment, seconds)
        self.run.durations.setdefault(self.job.experiment, []).append(seconds)
        self.run.ledger.finish(self.job.job_id)
        self.run.say(f"done {self.job.job_id} in {_fmt_s(seconds)}")
        return "done"


def stamp_result(job_id: str, result: dict, job_dir: Path) -> dict:
    """result.json as the executor writes it: ``experiment_id`` is the job's id (a job
    function's own must agree) and every predictions file a ``per_task`` entry (or its
    ``best_weights``) names gets its ``predictions_sha256`` (issue 25): the done check
    and ``stats`` verify the file is still the one scored.  A named file that is missing
    fails the job."""
    result = dict(result)
    if result.setdefault("experiment_id", job_id) != job_id:
        raise JobFailed(f"the job function's result names experiment_id "
                        f"{result['experiment_id']!r}, not {job_id!r}")
    per_task = result.get("per_task")
    if isinstance(per_task, dict):
        result["per_task"] = {task: _with_digest(entry, job_dir, f"per_task.{task}")
                              for task, entry in per_task.items()}
    return result


def _with_digest(entry, job_dir: Path, where: str):
    if not isinstance(entry, dict):
        return entry
    entry = dict(entry)
    rel = entry.get("predictions")
    if isinstance(rel, str):
        try:
            entry["predictions_sha256"] = sha256_file(job_dir / rel)
        except FileNotFoundError:
            raise JobFailed(f"{where}.predictions: {rel} was not written") from None
    if isinstance(entry.get("best_weights"), dict):
        entry["best_weights"] = _with_digest(entry["best_weights"], job_dir,
                                             f"{where}.best_weights")
    return entry


def _first_link(job_dir: Path) -> str | None:
    """The first symbolic link in the job's folder or one of its subfolders, where the job
    writes (log.txt, checkpoints/, predictions/, heldout/, evaluation/); None if none.
    Writing through one would write outside the results folder."""
    for parent, dirs, files in os.walk(job_dir):
        for name in sorted(dirs + files):
            if os.path.islink(os.path.join(parent, name)):
                return os.path.join(parent, name)
    return None


def _has_checkpoint(job_dir: Path) -> bool:
    """Whether the job's folder holds a checkpoint to resume from (``checkpoints/
    checkpoint-N``, runner.ml.checkpoint's names)."""
    try:
        with os.scandir(job_dir / "checkpoints") as it:
            return any(e.name.startswith("checkpoint-") for e in it)
    except OSError:
        return False


def _space_hint(exc: BaseException, job_dir: Path, reason: str) -> str:
    """``reason``, saying so where a write failed for lack of space: an ENOSPC anywhere in
    the exception's chain, or torch's "file write failed" (its C++ writer reports a full
    disk as "enforce fail at inline_container.cc" without a word of space)."""
    chain, e = [], exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    no_space = any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in chain) or \
        any("file write failed" in str(e) or "inline_container" in str(e) for e in chain)
    if not no_space:
        return reason
    try:
        free = f"{shutil.disk_usage(job_dir).free / 1e6:.0f} MB free"
    except OSError:
        free = "free space unknown"
    first = " ".join(reason.split())[:300]
    return f"no space left to write in {job_dir} ({free} on its disk): {first}"


def _dependency_results(job: Job, ledger: Ledger) -> dict[str, dict]:
    """job_id -> result.json of each job ``job`` depends on."""
    deps = {}
    for dep in job.depends_on:
        result = ledger.load_result(dep)
        if result is None:
            raise JobFailed(f"dependency {dep} has no readable result.json")
        deps[dep] = result
    return deps


def run_claimed(job: Job, claim: Claim, state: str, ledger: Ledger, data_dir: str | Path, *,
                job_fn: JobFn | None = None, should_stop: Callable[[], bool] = lambda: False,
                deadline: float | None = None, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
                out: Callable[[str], None] | None = None,
                tracking: Sequence[str] = ()) -> str:
    """Run one job that ``claim`` holds, exactly as ``run_plan`` does (heartbeat, log.txt,
    result.json last, failure record, release on interruption); return "done", "failed",
    "interrupted" or "lost".  The seam for executors that place jobs elsewhere (Ray):
    ``state`` is the job's state when it was claimed, ``deadline`` a time.monotonic()
    value, ``should_stop`` is polled by the job."""
    run = _RunContext(ledger=ledger, data_dir=Path(data_dir),
                      job_fn=job_fn or _default_job_fn(), should_stop=should_stop,
                      deadline=deadline, heartbeat_s=heartbeat_s, durations=ledger.durations(),
                      say=out or (lambda msg: print(msg, flush=True)), tracking=tuple(tracking))
    return _run_one(job, claim, state, run)


def status(plan: Plan, results_dir: str | Path, as_json: bool = False) -> str:
    ledger = Ledger(results_dir)
    # done = a result that proves it (parses, names the job, predictions' digests match)
    snap = ledger.snapshot((j.job_id for j in plan.jobs), verify=True)
    states = job_states(plan.jobs, snap)
    if as_json:
        import json
        return json.dumps(status_json(plan, ledger, snap, states), indent=1)
    return format_status(plan, ledger, snap, states)


def plan_table(plan: Plan, results_dir: str | Path) -> str:
    ledger = Ledger(results_dir)
    snap = ledger.snapshot((j.job_id for j in plan.jobs), verify=True)
    return format_plan(plan, job_states(plan.jobs, snap))
