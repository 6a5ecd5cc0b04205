"""One attempt at a claimed job: its folder, heartbeat, log.txt and progress bar, the job
function's call, result.json written last, and what each way of ending does to the claim.

``run_one`` runs a job a claim holds (``run_plan``'s claim loop and ``run_claimed``, the
seam for executors that place jobs elsewhere, such as Ray).  The job function is handed in
by whoever runs the plan: ``python -m runner`` passes the training engine
(runner/cli/run.py), tests pass stand-ins.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mtl_contract.files import remove_temp_files, sha256_file
from runner.errors import InputError
from runner.jobapi import JobContext, JobFailed, JobInterrupted, JobLost
from runner.observe.progress import JobProgress, RateMeter
from runner.orchestrate.ledger import DEFAULT_HEARTBEAT_S, Claim, Ledger
from runner.study.plan import Job

JobFn = Callable[[Job, JobContext], dict]


def _fmt_s(seconds: float | None) -> str:
    """The "done <job> in 1h05m" line's duration (the status screen's are fmt_duration's)."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


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
                        # taken over, or its claim file deleted or replaced by hand:
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



def _remove_stray_temp_files(ledger: Ledger, claim: Claim, job_dir: Path, logger) -> None:
    """Remove what interrupted atomic writes (result.json, predictions, ...) left in the job's
    folder; a file an earlier owner of the job may still be writing stays (see
    Ledger.abandoned_after_s)."""
    removed = remove_temp_files(job_dir, ledger.abandoned_after_s(claim))
    if removed:
        logger.info("removed %d temporary file(s) of interrupted writes: %s", len(removed),
                    ", ".join(str(p.relative_to(job_dir)) for p in removed))



@dataclass
class RunContext:
    """What running a claimed job takes from the executor that claimed it (``run_plan``,
    ``run_claimed``)."""
    ledger: Ledger
    data_dir: str | Path
    job_fn: JobFn                       # the job function the CLI (or a test) handed over
    should_stop: Callable[[], bool]     # the executor's stop: a signal, the budget, ...
    deadline: float | None              # time.monotonic() seconds at which the budget ends
    heartbeat_s: float
    durations: dict[str, list[float]]   # experiment -> seconds of its finished jobs; grows
    say: Callable[[str], None]
    tracking: tuple[str, ...] = ()
    bar_position: int = 0



def run_one(job: Job, claim: Claim, state: str, run: RunContext,
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

    def __init__(self, job: Job, claim: Claim, state: str, run: RunContext,
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
    ``best_weights``) names gets its ``predictions_sha256``: the done check
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
                job_fn: JobFn, should_stop: Callable[[], bool] = lambda: False,
                deadline: float | None = None, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
                out: Callable[[str], None] | None = None,
                tracking: Sequence[str] = ()) -> str:
    """Run one job that ``claim`` holds, exactly as ``run_plan`` does (heartbeat, log.txt,
    result.json last, failure record, release on interruption); return "done", "failed",
    "interrupted" or "lost".  The seam for executors that place jobs elsewhere (Ray):
    ``state`` is the job's state when it was claimed, ``deadline`` a time.monotonic()
    value, ``should_stop`` is polled by the job."""
    run = RunContext(ledger=ledger, data_dir=Path(data_dir), job_fn=job_fn,
                     should_stop=should_stop, deadline=deadline, heartbeat_s=heartbeat_s,
                     durations=ledger.durations(),
                     say=out or (lambda msg: print(msg, flush=True)), tracking=tuple(tracking))
    return run_one(job, claim, state, run)
