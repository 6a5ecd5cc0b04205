"""Run a plan's jobs as Ray tasks (``--executor ray [--address ADDR]``); the ledger decides.

The driver (this process) looks at the ledger, submits every ready job that it has not
submitted yet as a Ray task requesting ``num_gpus`` (1 when the cluster has GPUs, else 0)
and ``num_cpus`` (``--cpus-per-job``, default 1), and lets Ray run as many at once as the
cluster holds.  A task *claims its job through the same file ledger* when it starts (so a
job runs once even beside plain workers or another driver on the same results folder),
runs the same job function as ``run_plan`` (``runner.orchestrate.local.run_claimed``: heartbeat,
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
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import runner
from runner.errors import InputError
from runner.orchestrate.ledger import DEFAULT_HEARTBEAT_S, DEFAULT_LEASE_S, Ledger, Worker
from runner.orchestrate.local import (
    JobFn,
    _counts_line,
    job_states,
    run_claimed,
    safety_margin_s,
)
from runner.orchestrate.states import STATES, any_unfinished, exit_outcome, is_runnable
from runner.study.plan import Job, Plan

MAX_CRASHES = 3          # worker deaths of one job's task in one run before it is failed
STOP_CHECK_S = 1.0       # seconds between a task's looks at the stop file


def _stop_file(results_dir: Path, token: str) -> Path:
    return results_dir / "ledger" / "ray" / f"stop-{token}"


def ray_job(job: Job, results_dir: str, data_dir: str, job_fn: JobFn | None,
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
    fn = job_fn
    if fn is None:
        from runner.orchestrate.local import _default_job_fn
        fn = _default_job_fn()
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

    outcome = run_claimed(job, claim, state, ledger, data_dir, job_fn=fn,
                          should_stop=should_stop, deadline=deadline, heartbeat_s=heartbeat_s,
                          tracking=tracking)
    return job.job_id, outcome


def _pythonpath() -> str:
    """The folder holding the ``runner`` package first, so Ray workers import this code."""
    here = str(Path(runner.__file__).resolve().parents[1])
    rest = os.environ.get("PYTHONPATH", "")
    return here + (os.pathsep + rest if rest else "")


def run_ray(plan: Plan, results_dir: str | Path, *, job_fn: JobFn | None = None,
            address: str | None = None, time_budget_s: float | None = None,
            retry_failed: bool = False, cpus_per_job: float | None = None,
            lease_s: float = DEFAULT_LEASE_S, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
            poll_s: float = 2.0, out: Callable[[str], None] | None = None,
            tracking: tuple[str, ...] | None = None) -> int:
    """Run every job of ``plan`` that is not done as Ray tasks; return 0, 1 or 3.

    Uses the Ray cluster this process is already connected to, else ``ray.init(address)``
    (None: start a local one).  ``job_fn`` defaults to the training engine on each node.
    ``tracking``: experiment-tracking backends (None: the manifest's ``[study] tracking``).

    Long because the driver loop (submit, wait, record, budget, signals) shares its bookkeeping;
    the summary and exit code are runner.orchestrate.states.exit_outcome."""
    if tracking is None:
        tracking = getattr(getattr(plan.manifest, "study", None), "tracking", ()) or ()
    tracking = tuple(tracking)
    if cpus_per_job is not None and not cpus_per_job > 0:
        raise InputError(None, f"expected a positive number of CPUs, got {cpus_per_job}",
                         where="--cpus-per-job")
    try:
        import ray
    except ImportError:
        raise InputError(None, "ray is not installed: pip install 'mtl-transfer-runner[ray]' "
                         "(or pip install 'ray[default]>=2.9')", where="--executor ray") from None
    say = out or (lambda msg: print(msg, flush=True))
    results_dir = Path(results_dir).resolve()
    data_dir = str(Path(plan.data_dir).resolve())
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = {"runtime_env": {"env_vars": {"PYTHONPATH": _pythonpath()}}}
        if address is None:
            kwargs["include_dashboard"] = False
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise InputError(None, f"cannot connect to Ray at {address!r}: "
                             f"{' '.join(str(exc).split())[:200]}", where="--address") from None
    ledger = Ledger(results_dir, lease_s=lease_s)
    ledger.ensure()
    ids = [j.job_id for j in plan.jobs]
    for jid in ids:
        moved = ledger.set_aside_corrupt_result(jid)
        if moved is not None:
            say(f"warning: {jid}/result.json did not parse; moved to {moved.name}")
    resources = ray.cluster_resources()
    num_gpus = 1 if resources.get("GPU", 0) >= 1 else 0
    num_cpus = float(cpus_per_job) if cpus_per_job else 1.0
    say(f"ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; each job "
        f"asks for {num_cpus:g} CPU(s) and {num_gpus} GPU(s)")
    remote = ray.remote(ray_job).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)
    fn_ref = ray.put(job_fn)
    started = time.monotonic()
    deadline_unix = stop_at_unix = None
    if time_budget_s is not None:
        deadline_unix = time.time() + time_budget_s
        stop_at_unix = deadline_unix - safety_margin_s(time_budget_s)
    token = uuid.uuid4().hex[:12]
    stop_file = _stop_file(results_dir, token)
    signals: list[str] = []

    def on_signal(signum, frame):
        if signals:   # second signal: stop now; tasks in flight end with the driver
            raise KeyboardInterrupt
        signals.append(signal.Signals(signum).name)

    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, on_signal)
    inflight: dict = {}            # ObjectRef -> job_id
    retried: set[str] = set()
    crashes: Counter = Counter()
    # job_id -> time.monotonic() before which it is not submitted again: a task that found
    # its job busy or not ready must not be resubmitted in a tight loop
    cooldown: dict[str, float] = {}
    stopped_for_budget = False
    durations = ledger.durations()
    try:
        while True:
            stopping = bool(signals) or (stop_at_unix is not None and time.time() >= stop_at_unix)
            if stopping and not stop_file.exists():
                stop_file.parent.mkdir(parents=True, exist_ok=True)
                stop_file.touch()
                stopped_for_budget = stopped_for_budget or not signals
            snap = ledger.snapshot(ids)
            states = job_states(plan.jobs, snap)
            busy = set(inflight.values())
            skipped_for_time = False
            for job in plan.jobs if not stopping else ():
                jid, state = job.job_id, states[job.job_id]
                if jid in busy:
                    continue
                retry = state == "failed" and retry_failed and jid not in retried
                if not is_runnable(state, retry):
                    continue
                if cooldown.get(jid, 0.0) > time.monotonic():
                    skipped_for_time = skipped_for_time or cooldown[jid] == float("inf")
                    continue
                past = durations.get(job.experiment)
                if stop_at_unix is not None and past and \
                        time.time() + sum(past) / len(past) > stop_at_unix:
                    skipped_for_time = True
                    continue
                if retry:
                    retried.add(jid)
                ref = remote.remote(job, str(results_dir), data_dir, fn_ref, stop_at_unix,
                                    deadline_unix, token, lease_s, heartbeat_s, retry, num_cpus,
                                    tracking)
                inflight[ref] = jid
            if not inflight:
                if stopping or skipped_for_time or not any_unfinished(states.values()):
                    stopped_for_budget = stopped_for_budget or skipped_for_time
                    break
                time.sleep(poll_s)   # jobs run elsewhere (another driver or worker): wait
                continue
            finished, _ = ray.wait(list(inflight), num_returns=1, timeout=poll_s)
            if finished:
                finished, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=0)
            for ref in finished:
                jid = inflight.pop(ref)
                try:
                    _, outcome = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    # the worker process or its node died: the ledger's claim goes stale
                    # (at once on this machine, after the lease elsewhere); then resubmitted
                    crashes[jid] += 1
                    reason = " ".join(str(exc).split())[:300]
                    say(f"ray task for {jid} died ({crashes[jid]}/{MAX_CRASHES}): {reason}")
                    if crashes[jid] >= MAX_CRASHES:
                        ledger.record_failure(jid, f"its Ray worker died {MAX_CRASHES} times: "
                                              f"{reason}", "ray-driver")
                    continue
                if outcome == "interrupted":
                    stopped_for_budget = stopped_for_budget or not signals
                elif outcome == "no_time":
                    stopped_for_budget = True
                    cooldown[jid] = float("inf")   # the budget will not grow in this run
                elif outcome == "done":
                    durations = ledger.durations()
                elif outcome not in ("failed", "lost"):
                    cooldown[jid] = time.monotonic() + poll_s
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        try:
            os.unlink(stop_file)
        except OSError:
            pass
        if started_here:
            ray.shutdown()

    snap = ledger.snapshot(ids)
    states = job_states(plan.jobs, snap)
    counts = Counter(states.values())
    summary = _counts_line("jobs", counts, STATES) + \
        f" ({time.monotonic() - started:.0f} s on Ray)"
    left = any_unfinished(states.values())
    message, code = exit_outcome(summary, counts, len(plan.jobs),
                            signal=signals[0] if signals else None,
                            budget=stopped_for_budget and left, left=left)
    say(message)
    return code
