"""Progress and ETAs: a bar per running job, the study's "job k of N" line, and the ETAs that
``status`` prints -- all plain arithmetic on numbers the caller already has (status must stay
under a second for 10,000 jobs: nothing here reads a file).

The heartbeat payload the engine sends (``ctx.heartbeat``) is
``{"phase", "step", "total_steps", "tokens", "target_tokens", "epoch"}``; a token-controlled
job has a ``target_tokens`` and counts towards it, every other job counts optimizer steps
towards ``total_steps`` (an upper bound: early stopping may end it sooner, so its ETA is one
too).  ``RateMeter`` (in the worker) adds ``elapsed_s``, ``rate`` and ``eta_s`` to that payload
before it is written; ``status_eta`` turns a stored heartbeat into an ETA now.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any


def fmt_duration(seconds: float | None) -> str:
    """45 s, 12 min, 3 h 05 min, 2 d 4 h; "?" when unknown (None, nan, infinite, negative).
    The one duration format of the `status` screen and the study ETA line."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def position(progress: Mapping[str, Any]) -> tuple[float, float, str] | None:
    """(done, total, unit) of a heartbeat payload: tokens towards the target for a
    token-controlled job, else optimizer steps; None when it says neither."""
    target = progress.get("target_tokens")
    if isinstance(target, (int, float)) and target > 0:
        return float(progress.get("tokens") or 0), float(target), "tokens"
    total = progress.get("total_steps")
    if isinstance(total, (int, float)) and total > 0:
        return float(progress.get("step") or 0), float(total), "steps"
    return None


# ---------------------------------------------------------------------------- per job, live
def terminal() -> bool:
    """Bars only on a terminal: with stdout redirected the log stays clean lines."""
    try:
        return sys.stdout.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class JobProgress:
    """A tqdm bar over a job's steps (or tokens towards its target), with tqdm's ETA; fed the
    engine's heartbeat payloads.  Disabled (every call a no-op) unless on a terminal."""

    def __init__(self, job_id: str, enabled: bool | None = None, file=None, position_: int = 0):
        self.job_id = job_id
        self.enabled = terminal() if enabled is None else enabled
        self.file = file
        self.position = position_
        self.bar = None
        self.unit = None

    def update(self, progress: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        where = position(progress)
        if where is None:
            return
        done, total, unit = where
        if self.bar is None or unit != self.unit:
            self.close()
            from tqdm import tqdm
            self.unit = unit
            self.bar = tqdm(total=total, initial=done, desc=self.job_id, unit=unit[:-1],
                            unit_scale=unit == "tokens", dynamic_ncols=True, leave=False,
                            file=self.file or sys.stderr, position=self.position,
                            mininterval=1.0)
            return
        if total != self.bar.total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)
        phase = progress.get("phase")
        if phase and phase != "train":
            self.bar.set_postfix_str(str(phase), refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class RateMeter:
    """The worker's view of one attempt at a job: from the heartbeats it sends, the speed
    (units per second since this attempt's first step: a resumed job's restored steps do not
    count as fast ones) and the ETA.  ``annotate`` returns the payload with ``elapsed_s``,
    ``rate`` (units/s) and ``eta_s`` added, ready for the ledger's heartbeat file."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.start = clock()
        self.first: tuple[float, float, str] | None = None   # (time, done, unit)

    def annotate(self, progress: Mapping[str, Any]) -> dict:
        out = dict(progress)
        now = self.clock()
        out["elapsed_s"] = round(now - self.start, 1)
        where = position(progress)
        if where is None:
            return out
        done, total, unit = where
        if self.first is None or self.first[2] != unit or done < self.first[1]:
            self.first = (now, done, unit)   # the first step of this attempt: speed from here
            return out
        t0, d0, _ = self.first
        if now > t0 and done > d0:
            rate = (done - d0) / (now - t0)
            out["rate"] = rate
            out["eta_s"] = round(max(0.0, total - done) / rate, 1)
        return out


def status_eta(progress: Mapping[str, Any], last_beat: float, now: float,
               claimed_at: float | None = None) -> float | None:
    """A running job's ETA as of ``now`` from its last heartbeat: the ``eta_s`` the worker
    wrote, less the time since; for a heartbeat without one, the mean speed since the claim
    (``claimed_at``; it counts from zero, so a resumed job's restored steps look fast)."""
    eta = progress.get("eta_s")
    if isinstance(eta, (int, float)):
        return max(0.0, float(eta) - max(0.0, now - last_beat))
    where = position(progress)
    if where is None or claimed_at is None:
        return None
    done, total, _ = where
    spent = last_beat - claimed_at
    if done <= 0 or spent <= 0:
        return None
    return max(0.0, (total - done) * spent / done - max(0.0, now - last_beat))


# ------------------------------------------------------------------------------ the study
def study_eta(finished: Iterable[tuple[float, float | None]],
              pending_sizes: Iterable[float | None],
              running_left_s: Iterable[float | None] = (), workers: int = 1) -> float | None:
    """Seconds until the study is done.

    ``finished``: (seconds, size) of each finished job -- size in any one unit of work
    (planned training tokens, or steps) or None; ``pending_sizes``: the sizes of the jobs not
    started (None: unknown); ``running_left_s``: the running jobs' own ETAs.

    Speed: seconds per unit of size pooled over the finished jobs that have a size (total
    seconds / total size: big jobs weigh as much as they cost), applied to each pending job
    with a size; a pending job without one (or with no sized finished job to measure by)
    counts the mean duration of the finished jobs.  The work left -- pending estimates plus
    the running jobs' ETAs (a running job without one counts a mean job) -- is shared by
    ``workers``.  None until one job has finished."""
    secs = sized = 0.0
    all_secs, n = 0.0, 0
    for seconds, size in finished:
        all_secs += seconds
        n += 1
        if size:
            secs += seconds
            sized += size
    if n == 0:
        return None
    mean_job = all_secs / n
    per_unit = secs / sized if sized else None
    left = 0.0
    for size in pending_sizes:
        left += size * per_unit if size and per_unit is not None else mean_job
    for eta in running_left_s:
        left += mean_job if eta is None else eta
    return left / max(1, int(workers))


def study_line(done: int, total: int, running: int = 0, eta_s: float | None = None,
               failed: int = 0) -> str:
    """The executor's line when a job starts: job k of N with k = done + running."""
    k = min(total, done + running)
    parts = [f"job {k} of {total}", f"{done} done"]
    if running:
        parts.append(f"{running} running")
    if failed:
        parts.append(f"{failed} failed")
    return f"{parts[0]} ({', '.join(parts[1:])}), study ETA {fmt_duration(eta_s)}"


def status_rows(running: Iterable[Mapping[str, Any]], now: float) -> list[dict]:
    """For ``status --json``: per running job {job_id, worker, step, total_steps, tokens,
    target_tokens, phase, heartbeat_age_s, eta_s} from dicts {job_id, worker, progress,
    last_beat, claimed_at} (what the ledger snapshot already holds)."""
    rows = []
    for job in running:
        p = job.get("progress") or {}
        last = float(job.get("last_beat") or now)
        rows.append({"job_id": job.get("job_id"), "worker": job.get("worker"),
                     "phase": p.get("phase"), "step": p.get("step"),
                     "total_steps": p.get("total_steps"), "tokens": p.get("tokens"),
                     "target_tokens": p.get("target_tokens"),
                     "heartbeat_age_s": round(max(0.0, now - last), 1),
                     "eta_s": status_eta(p, last, now, job.get("claimed_at"))})
    return rows
