"""Several worker processes on one machine, all on the same ledger (``--workers auto|N``).

The parent starts one ``python -m runner run ...`` child per worker and does nothing else
with the jobs: the ledger under the results folder already guarantees that each job runs
once, so the children coordinate through it exactly as workers on different machines do.

* GPUs: ``auto`` starts one worker per visible GPU and gives worker i the i-th GPU alone
  (``CUDA_VISIBLE_DEVICES``); ``N`` workers share the GPUs round robin.  The visible GPUs
  are the ``CUDA_VISIBLE_DEVICES`` entries when that variable is set, else
  ``torch.cuda.device_count()``.
* No GPU: ``auto`` is one worker; ``N`` workers split the CPU cores this process may use
  (``OMP_NUM_THREADS`` = cores // N, at least 1, so torch threads do not oversubscribe).
* One worker: ``python -m runner`` runs the plan in its own process (no child at all).

The parent forwards SIGTERM / SIGINT to every child once per signal it gets (the children
run in their own session, so a terminal's Ctrl-C reaches them only through the parent, and
a first signal means "checkpoint and stop"); on Linux a child also gets SIGTERM if the
parent dies (``die_with_parent``).  The children enforce ``--time-budget`` themselves
(each starts with the budget left); at the budget's end the parent sends SIGTERM to any
child still running, and SIGKILL ``STOP_GRACE_S`` later.
Each child's output goes to ``<results>/ledger/workers/<worker_id>.log`` and, prefixed
with the worker id, to this process's stdout; when that stdout is closed (``| head``) the
parent tells the children to checkpoint and stop (SIGTERM), as one signal would.

Exit code: 2 if a worker saw bad input; else 3 if a worker stopped for the budget or a
signal, or died with jobs left (run again to resume); else 1 if jobs failed; else 0.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mtl_contract.schema import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, EXIT_TIME_BUDGET
from runner.errors import InputError
from runner.orchestrate.ledger import Ledger
from runner.orchestrate.states import (
    RESUME_HINT,
    STATES,
    any_unfinished,
    counts_line,
    final_states,
    stop_signals_to,
)
from runner.study.plan import Plan

LOG_SUBDIR = "ledger/workers"   # below the results folder: runner bookkeeping, not results
STOP_GRACE_S = 120.0            # seconds after the budget's end before children are SIGKILLed


@dataclass(frozen=True)
class WorkerSlot:
    """One worker: its id in the ledger and the environment it runs with."""
    worker_id: str
    env: dict[str, str]          # variables set for this worker (on top of os.environ)


def parse_workers(text: str) -> int | None:
    """'auto' -> None; a positive integer -> that many workers."""
    s = str(text).strip().lower()
    if s == "auto":
        return None
    if s.isdigit() and int(s) >= 1:
        return int(s)
    raise InputError(None, f"expected 'auto' or a positive number of workers, got {text!r}",
                     where="--workers")


def check_workers(requested: int | None, allow_more: bool = False,
                  gpus: Sequence[str] | None = None, cores: int | None = None) -> None:
    """``--workers N`` is at most what this machine has: one worker per usable CPU core (or
    per visible GPU, if there are more); more only with ``--allow-more-workers``.  Each
    worker is a process that loads a model, so an unbounded N (``--workers 100000``)
    started processes until the machine gave out."""
    if requested is None or allow_more:
        return
    cores = usable_cores() if cores is None else cores
    if requested <= cores:
        return   # (no GPU count needed: it may import torch)
    gpus = visible_gpus() if gpus is None else gpus
    limit = max(cores, len(gpus))
    if requested > limit:
        raise InputError(None, f"{requested} workers is more than this machine has ({cores} "
                         f"usable CPU core(s), {len(gpus)} visible GPU(s): at most {limit}); "
                         "pass --allow-more-workers to start them anyway", where="--workers")


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """The GPU ids this process may use, as CUDA_VISIBLE_DEVICES entries."""
    environ = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in environ:
        entries = [e.strip() for e in environ["CUDA_VISIBLE_DEVICES"].split(",")]
        # CUDA stops at the first invalid entry (e.g. "-1" hides every GPU)
        out = []
        for e in entries:
            if not e or e.startswith("-"):
                break
            out.append(e)
        return out
    # lazily, torch-side: only `--workers auto|N` with no CUDA_VISIBLE_DEVICES needs it (a
    # missing module here is a broken install and must fail loudly, never read as "no GPU")
    from runner.ml.runtime import cuda_device_count
    return [str(i) for i in range(cuda_device_count())]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


def plan_workers(requested: int | None, gpus: Sequence[str], cores: int,
                 prefix: str) -> list[WorkerSlot]:
    """Worker slots for ``--workers`` (``requested`` None = auto) on this machine."""
    n = requested if requested is not None else max(1, len(gpus))
    threads = max(1, cores // n)   # CPU threads per worker (tokenising, CPU training)
    slots = []
    for i in range(n):
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "TOKENIZERS_PARALLELISM": "false"}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
        slots.append(WorkerSlot(worker_id=f"{prefix}-w{i}", env=env))
    return slots


try:   # looked up here, not in the forked child (dlopen after fork may deadlock)
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None


PARENT_ENV = "RUNNER_WORKERS_PARENT"   # the parent's pid, set in each worker's environment


def die_with_parent() -> None:
    """In a worker (``python -m runner`` calls this first): SIGTERM when the parent that
    started it dies (Linux prctl), so an orphaned worker checkpoints and stops instead of
    running on unsupervised.

    The kernel sends the parent-death signal each time the child is re-parented, and a
    dying multi-threaded parent can re-parent it once per thread; a second SIGTERM would
    mean "stop now, without a checkpoint".  So the kernel sends SIGUSR1, and its handler
    turns the first one into a single SIGTERM."""
    parent = os.environ.get(PARENT_ENV)
    if _PRCTL is None or not parent or not parent.isdigit():
        return
    fired: list[bool] = []

    def parent_died(signum, frame):
        if not fired:
            fired.append(True)
            signal.raise_signal(signal.SIGTERM)

    signal.signal(signal.SIGUSR1, parent_died)
    _PRCTL(1, int(signal.SIGUSR1))   # 1 = PR_SET_PDEATHSIG
    if os.getppid() != int(parent):   # the parent died before prctl took effect
        parent_died(signal.SIGUSR1, None)


def _follow(proc: subprocess.Popen, log_path: Path, offset: int, prefix: str,
            echo: Callable[[str], None]) -> None:
    """Echo the lines a child appends to its log file, prefixed, until it has exited.

    The child writes to the file itself (not to a pipe of ours), so a parent that dies
    never breaks a worker's output: the worker checkpoints on SIGTERM and says so."""
    with open(log_path, encoding="utf-8", errors="replace") as log:
        log.seek(offset)
        partial = ""
        while True:
            exited = proc.poll() is not None
            chunk = log.read()
            if chunk:
                lines = (partial + chunk).split("\n")
                partial = lines.pop()
                for line in lines:
                    echo(f"[{prefix}] {line.rstrip()}")
            elif exited:
                if partial:
                    echo(f"[{prefix}] {partial.rstrip()}")
                return
            else:
                time.sleep(0.2)


def run_workers(plan: Plan, results_dir: str | Path, child_args: Sequence[str], *,
                workers: int | None, time_budget_s: float | None = None,
                retry_failed: bool = False, worker_prefix: str | None = None,
                command: Sequence[str] | None = None, environ: dict[str, str] | None = None,
                out: Callable[[str], None] | None = None) -> int:
    """Run ``plan`` with several worker processes on one machine; return the exit code.

    ``child_args`` are the worker's own arguments (manifest, --results-dir, --data-dir);
    ``command`` is what starts a worker (default ``python -m runner run``; the tests pass
    a stand-in).  Each child gets ``--worker-id`` and the budget left as ``--time-budget``.
    The children, and what happens to them, are ``_Children``.
    """
    say = out or (lambda msg: print(msg, flush=True))
    environ = dict(os.environ if environ is None else environ)
    slots = plan_workers(workers, visible_gpus(environ), usable_cores(),
                         worker_prefix or f"{socket.gethostname()}-{os.getpid()}")
    children = _Children(say, started_at=time.monotonic(), time_budget_s=time_budget_s)
    ledger = Ledger(results_dir)
    ledger.ensure()
    if retry_failed:
        # Retry each failed job once overall, not once per worker: clear the failure
        # records here; a released claim makes the job "interrupted", which any worker runs.
        for jid in ledger.snapshot([j.job_id for j in plan.jobs]).failed:
            ledger.clear_failure(jid)
    log_dir = Path(results_dir) / LOG_SUBDIR
    log_dir.mkdir(parents=True, exist_ok=True)
    base = list(command or [sys.executable, "-m", "runner", "run"])
    try:
        with stop_signals_to(children.forward):
            for index, slot in enumerate(slots):
                if children.signals:   # SIGTERM / Ctrl-C while starting: start no more
                    say(f"stopped starting workers after {index} of {len(slots)} "
                        f"({children.signals[0]})")
                    break
                args = [*base, *child_args, "--worker-id", slot.worker_id]
                if time_budget_s is not None:
                    args += ["--time-budget", f"{max(children.budget_left(), 1.0):.3f}s"]
                children.start(slot, args, log_dir / f"{slot.worker_id}.log",
                               env={**environ, **slot.env, "PYTHONUNBUFFERED": "1",
                                    PARENT_ENV: str(os.getpid()),
                                    "RUNNER_WORKER_INDEX": str(index)})
            children.wait()
    finally:
        children.reap()
    return _outcome(plan, ledger, children, log_dir, say)


class _Children:
    """The worker processes of one ``run_workers`` call (each with the thread echoing its
    log) and what happened to them: the signals passed on, whether the budget's end was
    enforced, whether our stdout went away."""

    def __init__(self, say: Callable[[str], None], started_at: float,
                 time_budget_s: float | None):
        self.say, self.started_at, self.time_budget_s = say, started_at, time_budget_s
        self.procs: list[tuple[WorkerSlot, subprocess.Popen, threading.Thread]] = []
        self.signals: list[str] = []      # what the children were told to stop for
        self.budget_kill_sent = False
        self.stdout_gone = threading.Event()   # our reader went away (`| head`): BrokenPipeError
        self._print_lock = threading.Lock()

    def budget_left(self) -> float:
        return self.time_budget_s - (time.monotonic() - self.started_at)

    def echo(self, line: str) -> None:
        with self._print_lock:
            if self.stdout_gone.is_set():
                return   # every line is still in the worker's log file
            try:
                self.say(line)
            except BrokenPipeError:   # in a pump thread: tell the main loop, no traceback
                self.stdout_gone.set()

    def forward(self, signum, frame) -> None:
        """SIGINT/SIGTERM: pass it on to every running child (each signal once)."""
        self.signals.append(signal.Signals(signum).name)
        self._signal_running(signum)

    def start(self, slot: WorkerSlot, args: list[str], log_path: Path,
              env: dict[str, str]) -> None:
        desc = ", ".join(f"{k}={v}" for k, v in slot.env.items()
                         if k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS"))
        self.say(f"worker {slot.worker_id}: {desc}; log {log_path}")
        with open(log_path, "ab") as log:
            offset = log.tell()   # a rerun appends to the same worker's log
            proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        pump = threading.Thread(target=_follow, daemon=True, args=(
            proc, log_path, offset, slot.worker_id, self.echo))
        pump.start()
        self.procs.append((slot, proc, pump))
        if self.signals:   # a signal arrived while starting: the new child gets it too
            proc.send_signal(signal.SIGTERM)

    def wait(self) -> None:
        """Until every child has exited: pass a closed stdout on as SIGTERM, and enforce the
        budget's end."""
        while any(p.poll() is None for _, p, _ in self.procs):
            time.sleep(0.2)
            if self.stdout_gone.is_set() and "closed stdout" not in self.signals:
                # as `python -m runner run` alone stops at its next line of output: the
                # workers checkpoint and give their jobs back; the entry point exits 1
                self.signals.append("closed stdout")
                self._signal_running(signal.SIGTERM)
            if self.time_budget_s is not None:
                self._enforce_budget(time.monotonic() - self.started_at)

    def _enforce_budget(self, elapsed: float) -> None:
        if elapsed > self.time_budget_s and not self.budget_kill_sent:
            # the children should have stopped by now (they checkpoint a margin early)
            self.budget_kill_sent = True
            self._signal_running(signal.SIGTERM)
        if self.budget_kill_sent and elapsed > self.time_budget_s + STOP_GRACE_S:
            for _, proc, _ in self.procs:
                if proc.poll() is None:
                    proc.kill()

    def _signal_running(self, signum: int) -> None:
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    def reap(self) -> None:
        """Wait for the children and their echo threads; on the way out of an exception, stop
        the children still running (SIGTERM, SIGKILL a minute later)."""
        for _, proc, pump in self.procs:
            if proc.poll() is None:    # leaving on an exception: do not orphan workers
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
            pump.join(timeout=10)

    def exit_codes(self) -> dict[str, int | None]:
        return {slot.worker_id: proc.returncode for slot, proc, _ in self.procs}


def _outcome(plan: Plan, ledger: Ledger, children: _Children, log_dir: Path,
             say: Callable[[str], None]) -> int:
    """Print the jobs' and the workers' ends; return the exit code (the module docstring)."""
    codes = children.exit_codes()
    states, counts = final_states(plan, ledger)
    say(counts_line("jobs", counts, STATES) + "; workers: " +
        ", ".join(f"{w} exit {c}" for w, c in codes.items()))
    crashed = [w for w, c in codes.items() if c not in (EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT,
                                                         EXIT_TIME_BUDGET)]
    for w in crashed:
        say(f"worker {w} died (exit {codes[w]}); see {log_dir / (w + '.log')}")
    unfinished = any_unfinished(states.values())
    if EXIT_BAD_INPUT in codes.values():
        return EXIT_BAD_INPUT
    if children.signals or children.budget_kill_sent or EXIT_TIME_BUDGET in codes.values() or \
            (crashed and unfinished):
        say(RESUME_HINT)
        return EXIT_TIME_BUDGET
    if EXIT_FAILED in codes.values() or counts.get("failed") or counts.get("blocked"):
        return EXIT_FAILED
    if unfinished:   # cannot happen when every worker exited 0; never claim "done" falsely
        return EXIT_TIME_BUDGET
    say(f"all {len(plan.jobs)} jobs done")
    return EXIT_OK
