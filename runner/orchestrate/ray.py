"""Run a plan's jobs as Ray tasks (``--executor ray [--address ADDR]``); the ledger decides.

The driver (this process) looks at the ledger, submits every ready job that it has not
submitted yet as a Ray task requesting ``num_gpus`` (1 when the cluster has GPUs, else 0)
and ``num_cpus`` (``--cpus-per-job``, default 1), and lets Ray run as many at once as the
cluster holds.  A task *claims its job through the same file ledger* when it starts (so a
job runs once even beside plain workers or another driver on the same results folder),
runs the same job function as ``run_plan`` (``runner.orchestrate.attempt.run_claimed``: heartbeat,
log.txt, result.json written atomically and last) and returns an outcome.  Dependencies are
the ledger's: a token_controlled job is submitted only once its multi-task job's
result.json exists.

Shared storage.  The results folder (claims, heartbeats, checkpoints, results) and the data
folder must be on storage every node mounts at the same path (NFS, a cluster file system).

A node that dies.  Its tasks are not retried by Ray (max_retries=0): the ledger decides.
The dead node's claims stop heartbeating; after the lease (120 s) they are "stale", the
driver submits those jobs again, and the task that takes a claim over resumes the job from
its last checkpoint on the shared storage (at most ``checkpoint_every_s`` of work is lost).
A job whose task crashes its worker three times in this run is marked failed.

Stopping.  ``--time-budget`` and SIGTERM / Ctrl-C stop submitting; the running tasks are
told to checkpoint through a stop file under ``ledger/ray/`` (tasks on every node see it on
the shared storage) and the command exits 3: run it again to resume.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import runner
from runner.errors import InputError
from runner.orchestrate.attempt import JobFn, run_claimed
from runner.orchestrate.ledger import DEFAULT_HEARTBEAT_S, DEFAULT_LEASE_S, Ledger, Worker
from runner.orchestrate.local import manifest_tracking, safety_margin_s, set_aside_corrupt_results
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

MAX_CRASHES = 3          # worker deaths of one job's task in one run before it is failed
STOP_CHECK_S = 1.0       # seconds between a task's looks at the stop file


def _stop_file(results_dir: Path, token: str) -> Path:
    return results_dir / "ledger" / "ray" / f"stop-{token}"


def ray_job(job: Job, results_dir: str, data_dir: str, job_fn: JobFn,
            stop_at_unix: float | None, deadline_unix: float | None, stop_token: str,
            lease_s: float, heartbeat_s: float, retry_failed: bool,
            num_cpus: float, tracking: tuple[str, ...] = ()) -> tuple[str, str]:
    """Body of one Ray task: claim ``job`` in the ledger, run it, return (job_id, outcome).

    outcome: done | failed | interrupted | lost (another worker took it over) |
    busy (someone else holds it) | not_ready | no_time (the budget cannot fit it)."""
    ledger = Ledger(results_dir, lease_s=lease_s)
    stop_file = _stop_file(Path(results_dir), stop_token)
    if stop_file.exists() or (stop_at_unix is not None and time.time() >= stop_at_unix):
        return job.job_id, "no_time"
    past = ledger.durations().get(job.experiment)
    if stop_at_unix is not None and past and time.time() + sum(past) / len(past) > stop_at_unix:
        return job.job_id, "no_time"
    snap = ledger.snapshot([job.job_id, *job.depends_on])
    if any(d not in snap.done for d in job.depends_on):
        return job.job_id, "not_ready"
    state = job_states([replace(job, depends_on=())], snap)[job.job_id]
    if not is_runnable(state, retry_failed):
        return job.job_id, "busy" if state == "running" else state
    # A Ray worker runs many tasks in one process: the pid identifies this worker process.
    claim = ledger.try_claim(job.job_id, Worker(f"ray-{Worker.default_id()}"),
                             snap.claims.get(job.job_id))
    if claim is None:
        return job.job_id, "busy"
    torch = __import__("sys").modules.get("torch")
    if torch is not None:
        # Ray sets OMP_NUM_THREADS only for new workers; a reused worker keeps its torch
        # threads, so set them to the CPUs this task was granted.
        torch.set_num_threads(max(1, int(num_cpus)))
    # Wall-clock budget from the driver, turned into this node's monotonic clock.
    offset = time.monotonic() - time.time()
    stop_at = None if stop_at_unix is None else stop_at_unix + offset
    deadline = None if deadline_unix is None else deadline_unix + offset
    checked = {"at": 0.0, "stop": False}

    def should_stop() -> bool:
        if stop_at is not None and time.monotonic() >= stop_at:
            return True
        now = time.monotonic()
        if not checked["stop"] and now - checked["at"] >= STOP_CHECK_S:
            checked["at"], checked["stop"] = now, stop_file.exists()
        return checked["stop"]

    outcome = run_claimed(job, claim, state, ledger, data_dir, job_fn=job_fn,
                          should_stop=should_stop, deadline=deadline, heartbeat_s=heartbeat_s,
                          tracking=tracking)
    return job.job_id, outcome


def _pythonpath() -> str:
    """The folder holding the ``runner`` package first, so Ray workers import this code."""
    here = str(Path(runner.__file__).resolve().parents[1])
    rest = os.environ.get("PYTHONPATH", "")
    return here + (os.pathsep + rest if rest else "")


def run_ray(plan: Plan, results_dir: str | Path, *, job_fn: JobFn,
            address: str | None = None, time_budget_s: float | None = None,
            retry_failed: bool = False, cpus_per_job: float | None = None,
            lease_s: float = DEFAULT_LEASE_S, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
            poll_s: float = 2.0, out: Callable[[str], None] | None = None,
            tracking: tuple[str, ...] | None = None) -> int:
    """Run every job of ``plan`` that is not done as Ray tasks; return 0, 1 or 3.

    Uses the Ray cluster this process is already connected to, else ``ray.init(address)``
    (None: start a local one).  ``job_fn`` runs each job on its node (``python -m runner``
    hands over the training engine, runner/cli/run.py).
    ``tracking``: experiment-tracking backends (None: the manifest's ``[study] tracking``).

    The driver loop is ``_Driver``; the summary and exit code are
    runner.orchestrate.states.exit_outcome."""
    tracking = manifest_tracking(plan) if tracking is None else tuple(tracking)
    if cpus_per_job is not None and not cpus_per_job > 0:
        raise InputError(None, f"expected a positive number of CPUs, got {cpus_per_job}",
                         where="--cpus-per-job")
    ray = _import_ray()
    say = out or (lambda msg: print(msg, flush=True))
    results_dir = Path(results_dir).resolve()
    data_dir = str(Path(plan.data_dir).resolve())
    started_here = _connect(ray, address)
    ledger = Ledger(results_dir, lease_s=lease_s)
    ledger.ensure()
    set_aside_corrupt_results(ledger, [j.job_id for j in plan.jobs], say)
    num_cpus, num_gpus = _task_resources(ray, cpus_per_job, say)
    remote = ray.remote(ray_job).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)
    fn_ref = ray.put(job_fn)
    started = time.monotonic()
    deadline_unix = stop_at_unix = None
    if time_budget_s is not None:
        deadline_unix = time.time() + time_budget_s
        stop_at_unix = deadline_unix - safety_margin_s(time_budget_s)
    token = uuid.uuid4().hex[:12]

    def submit(job: Job, retry: bool):
        return remote.remote(job, str(results_dir), data_dir, fn_ref, stop_at_unix,
                             deadline_unix, token, lease_s, heartbeat_s, retry, num_cpus,
                             tracking)

    driver = _Driver(ray, plan, ledger, submit, stop_file=_stop_file(results_dir, token),
                     stop_at_unix=stop_at_unix, retry_failed=retry_failed, poll_s=poll_s,
                     say=say)
    try:
        with stop_signals_to(driver.on_signal):
            driver.run()
    finally:
        driver.remove_stop_file()
        if started_here:
            ray.shutdown()
    return driver.report(started)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError(None, "ray is not installed: pip install 'mtl-transfer-runner[ray]' "
                         "(or pip install 'ray[default]>=2.9')", where="--executor ray") from None
    return ray


def _connect(ray, address: str | None) -> bool:
    """Connect to the Ray cluster at ``address`` (None: start a local one) unless this
    process is connected already; True if it connected here (and so shuts Ray down)."""
    if ray.is_initialized():
        return False
    kwargs = {"runtime_env": {"env_vars": {"PYTHONPATH": _pythonpath()}}}
    if address is None:
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise InputError(None, f"cannot connect to Ray at {address!r}: "
                         f"{' '.join(str(exc).split())[:200]}", where="--address") from None
    return True


def _task_resources(ray, cpus_per_job: float | None, say: Callable[[str], None]
                    ) -> tuple[float, int]:
    """The CPUs and GPUs each job's task asks for (a GPU when the cluster has any); says so."""
    resources = ray.cluster_resources()
    num_gpus = 1 if resources.get("GPU", 0) >= 1 else 0
    num_cpus = float(cpus_per_job) if cpus_per_job else 1.0
    say(f"ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; each job "
        f"asks for {num_cpus:g} CPU(s) and {num_gpus} GPU(s)")
    return num_cpus, num_gpus


class _Driver:
    """The driver loop's bookkeeping: look at the ledger, submit the ready jobs not in
    flight, record what the finished tasks say, until nothing is left to submit or wait
    for; a signal or the budget stops the submitting (the stop file tells the tasks)."""

    def __init__(self, ray, plan: Plan, ledger: Ledger, submit: Callable, *, stop_file: Path,
                 stop_at_unix: float | None, retry_failed: bool, poll_s: float,
                 say: Callable[[str], None]):
        self.ray, self.plan, self.ledger, self.submit = ray, plan, ledger, submit
        self.say = say
        self.ids = [j.job_id for j in plan.jobs]
        self.stop_file, self.stop_at_unix = stop_file, stop_at_unix
        self.retry_failed, self.poll_s = retry_failed, poll_s
        self.signals: list[str] = []
        self.inflight: dict = {}            # ObjectRef -> job_id
        self.retried: set[str] = set()
        self.crashes: Counter = Counter()
        # job_id -> time.monotonic() before which it is not submitted again: a task that found
        # its job busy or not ready must not be resubmitted in a tight loop
        self.cooldown: dict[str, float] = {}
        self.stopped_for_budget = False
        self.durations = ledger.durations()

    def on_signal(self, signum, frame) -> None:
        if self.signals:   # second signal: stop now; tasks in flight end with the driver
            raise KeyboardInterrupt
        self.signals.append(signal.Signals(signum).name)

    def run(self) -> None:
        while True:
            stopping = self._stopping()
            snap = self.ledger.snapshot(self.ids)
            states = job_states(self.plan.jobs, snap)
            skipped_for_time = False if stopping else self._submit_ready(states)
            if not self.inflight:
                if stopping or skipped_for_time or not any_unfinished(states.values()):
                    self.stopped_for_budget = self.stopped_for_budget or skipped_for_time
                    return
                time.sleep(self.poll_s)   # jobs run elsewhere (another driver or worker): wait
                continue
            self._collect()

    def _stopping(self) -> bool:
        """Whether to stop submitting (a signal, the budget); the first time, tell the tasks
        running to checkpoint and stop through the stop file."""
        stopping = bool(self.signals) or (self.stop_at_unix is not None and
                                          time.time() >= self.stop_at_unix)
        if stopping and not self.stop_file.exists():
            self.stop_file.parent.mkdir(parents=True, exist_ok=True)
            self.stop_file.touch()
            self.stopped_for_budget = self.stopped_for_budget or not self.signals
        return stopping

    def _submit_ready(self, states: dict[str, str]) -> bool:
        """Submit each runnable job not in flight or cooling down; return whether one was
        held back for lack of time."""
        busy = set(self.inflight.values())
        skipped_for_time = False
        for job in self.plan.jobs:
            jid, state = job.job_id, states[job.job_id]
            if jid in busy:
                continue
            retry = state == "failed" and self.retry_failed and jid not in self.retried
            if not is_runnable(state, retry):
                continue
            if self.cooldown.get(jid, 0.0) > time.monotonic():
                skipped_for_time = skipped_for_time or self.cooldown[jid] == float("inf")
                continue
            past = self.durations.get(job.experiment)
            if self.stop_at_unix is not None and past and \
                    time.time() + sum(past) / len(past) > self.stop_at_unix:
                skipped_for_time = True
                continue
            if retry:
                self.retried.add(jid)
            self.inflight[self.submit(job, retry)] = jid
        return skipped_for_time

    def _collect(self) -> None:
        """Wait up to poll_s for tasks to finish and record what each says."""
        ray, inflight = self.ray, self.inflight
        finished, _ = ray.wait(list(inflight), num_returns=1, timeout=self.poll_s)
        if finished:
            finished, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=0)
        for ref in finished:
            jid = inflight.pop(ref)
            try:
                _, outcome = ray.get(ref)
            except ray.exceptions.RayError as exc:
                self._crashed(jid, exc)
                continue
            if outcome == "interrupted":
                self.stopped_for_budget = self.stopped_for_budget or not self.signals
            elif outcome == "no_time":
                self.stopped_for_budget = True
                self.cooldown[jid] = float("inf")   # the budget will not grow in this run
            elif outcome == "done":
                self.durations = self.ledger.durations()
            elif outcome not in ("failed", "lost"):
                self.cooldown[jid] = time.monotonic() + self.poll_s

    def _crashed(self, jid: str, exc: Exception) -> None:
        # the worker process or its node died: the ledger's claim goes stale
        # (at once on this machine, after the lease elsewhere); then resubmitted
        self.crashes[jid] += 1
        reason = " ".join(str(exc).split())[:300]
        self.say(f"ray task for {jid} died ({self.crashes[jid]}/{MAX_CRASHES}): {reason}")
        if self.crashes[jid] >= MAX_CRASHES:
            self.ledger.record_failure(jid, f"its Ray worker died {MAX_CRASHES} times: "
                                       f"{reason}", "ray-driver")

    def remove_stop_file(self) -> None:
        try:
            os.unlink(self.stop_file)
        except OSError:
            pass

    def report(self, started: float) -> int:
        """Print the summary; return the exit code."""
        states, counts = final_states(self.plan, self.ledger)
        summary = counts_line("jobs", counts, STATES) + \
            f" ({time.monotonic() - started:.0f} s on Ray)"
        left = any_unfinished(states.values())
        message, code = exit_outcome(summary, counts, len(self.plan.jobs),
                                     signal=self.signals[0] if self.signals else None,
                                     budget=self.stopped_for_budget and left, left=left)
        self.say(message)
        return code
