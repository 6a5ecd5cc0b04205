"""Who runs what, and what is done: plain files, safe across processes and machines.

Layout under the study's results folder (works on a local disk and on a folder that
machines share, e.g. NFS; no database)::

    <job_id>/result.json              written atomically and LAST: the only proof of "done"
    ledger/claims/<job_id>.<gen>.claim  who owns the job (immutable JSON, see below)
    ledger/heartbeats/<job_id>.<gen>.json  {gen, token, time, progress, released} of the
                                      owner of claim generation <gen>
    ledger/failed/<job_id>.json       {reason (one line), worker, time}
    ledger/durations/<job_id>.json    {experiment, seconds}: time estimates for --time-budget
    ledger/tmp/                       staging for claims (stray files here are ignored)

Claims.  A claim file is written completely under ledger/tmp/ and then published with
``link()``, which fails if the name exists (atomic on local disks and on NFS), so a claim
is either absent or complete.  Generation 0 claims a fresh job.  A claim whose owner
stopped heartbeating for ``lease_s`` seconds (or whose process is known dead: same host,
same boot, same pid namespace, pid gone), or that its owner released on interruption, is
taken over by publishing generation ``gen + 1``: only one taker can create that name, so
two takers never both win.  Generations only grow while a job is unfinished; the owner of
generation g learns it lost the job when generation g + 1 appears.  Heartbeats live in
separate files, one per generation, so a slow owner's last write can touch neither its
successor's claim nor its successor's heartbeat.

Every write is atomic (temporary file, fsync, rename) or an exclusive create, so a
``kill -9`` at any instant leaves either the old state or the new one.  Readers skip names
that start with "." (temporary files of interrupted writes).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import InputError
from runner.fsutil import atomic_write_json, fsync_dir
from stats.fileio import MAX_JSON_BYTES, FileTooLarge, read_bounded, sha256_bytes

DEFAULT_LEASE_S = 120.0      # seconds without a heartbeat before a claim may be taken over
DEFAULT_HEARTBEAT_S = 20.0   # seconds between heartbeats of a running job


def _read_json(path: Path) -> Any:
    """Parsed JSON, or None when the file is absent or unreadable (bounded: a ledger file
    linked to /dev/zero is not read forever)."""
    try:
        return json.loads(read_bounded(path, MAX_JSON_BYTES))
    except (OSError, ValueError, RecursionError):
        return None


# predictions files of a result are at most this many bytes (stats' bound too)
MAX_PREDICTIONS_BYTES = 1 << 30


def result_problem(job_id: str, data: Any, job_dir: Path) -> str | None:
    """Why a parsed result.json does not prove its job done, or None when it does: it must
    be an object naming the job (``{}`` or another job's result is not), and every
    predictions file it recorded a SHA256 for (``predictions_sha256``, stamped by the executor) must still
    have it -- a truncated or swapped parquet makes the job run again, not get scored."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("experiment_id") != job_id:
        return f"experiment_id is {data.get('experiment_id')!r}, not the job's id"
    per_task = data.get("per_task") or {}
    entries = [] if not isinstance(per_task, dict) else [
        e for task in per_task.values() if isinstance(task, dict)
        for e in (task, task.get("best_weights")) if isinstance(e, dict)]
    for entry in entries:
        digest, rel = entry.get("predictions_sha256"), entry.get("predictions")
        if digest is None:
            continue   # a result written before digests (results/README.md)
        if not isinstance(rel, str):
            return "predictions_sha256 without predictions"
        path = job_dir / rel
        if not os.path.realpath(path).startswith(os.path.realpath(job_dir) + os.sep):
            return f"predictions {rel!r} lies outside the job's folder"
        try:
            found = sha256_bytes(read_bounded(path, MAX_PREDICTIONS_BYTES))
        except FileNotFoundError:
            return f"{rel} is missing"
        except FileTooLarge as exc:
            return f"{rel}: {exc}"
        except OSError as exc:
            raise InputError(str(path), f"cannot read it ({exc.strerror or exc}); fix its "
                             "permissions (a finished job is never trained again for that)"
                             ) from None
        if found != digest:
            return f"{rel} is not the file its result recorded (sha256 differs)"
    return None


def _machine_key() -> str:
    """Host, boot and pid namespace: pids are comparable only when all three match."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        parts.append("")  # not Linux: liveness comes from the lease alone
    return "|".join(parts)


MACHINE = _machine_key()


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # PermissionError: another user's process, alive
        return True
    return True


def pid_alive(pid: int) -> bool:
    """False once the process has exited, whether or not its parent has reaped it yet."""
    if not _pid_exists(pid):
        return False
    try:  # a killed child its parent has not reaped yet is a zombie: dead for us
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")   # X: being reaped
    except (FileNotFoundError, ProcessLookupError):
        # Either no procfs here (then the process exists: kill() found it), or a zombie
        # was reaped between kill() and the read (ENOENT or ESRCH).  Ask kill() again
        # rather than calling the vanished process alive: that made a dead owner's claim
        # read "running" for a moment.
        return _pid_exists(pid)
    except (OSError, IndexError):
        return True


@dataclass(frozen=True)
class Worker:
    worker_id: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    @staticmethod
    def default_id() -> str:
        return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class Claim:
    job_id: str
    gen: int
    token: str
    worker: str


@dataclass(frozen=True)
class ClaimState:
    gen: int
    info: dict               # the claim file: worker, host, pid, claimed_at, lease_s, ...
    last_beat: float          # unix seconds of the owner's last sign of life
    progress: dict
    status: str               # "running" | "stale" | "released"


@dataclass
class Snapshot:
    """One look at the ledger: a few directory scans, not a stat per job."""
    done: set[str]
    started: set[str]         # a job folder exists (checkpoints may be there)
    failed: set[str]
    claims: dict[str, ClaimState]
    taken_at: float


class Ledger:
    def __init__(self, root: str | Path, lease_s: float = DEFAULT_LEASE_S):
        self.root = Path(root)
        self.dir = self.root / "ledger"
        self.claims = self.dir / "claims"
        self.beats = self.dir / "heartbeats"
        self.failed = self.dir / "failed"
        self.durations_dir = self.dir / "durations"
        self.tmp = self.dir / "tmp"
        self.lease_s = float(lease_s)

    def ensure(self) -> None:
        for d in (self.claims, self.beats, self.failed, self.durations_dir, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    # -- results ---------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def result_path(self, job_id: str) -> Path:
        return self.root / job_id / "result.json"

    def read_result(self, job_id: str) -> tuple[dict | None, str | None]:
        """(the parsed result, None) when it proves the job done, else (None, why not; None
        when there is no result.json).  A result.json that cannot be read (permissions, a
        folder in its place) is bad input, never a reason to train a finished job again:
        :class:`InputError` naming it."""
        path = self.result_path(job_id)
        try:
            data = json.loads(read_bounded(path, MAX_JSON_BYTES))
        except FileNotFoundError:
            return None, None
        except FileTooLarge as exc:
            return None, str(exc)
        except (ValueError, RecursionError) as exc:
            return None, f"does not parse ({type(exc).__name__})"
        except OSError as exc:
            raise InputError(str(path), f"cannot read it ({exc.strerror or exc}); fix its "
                             "permissions (a finished job is never trained again for that)"
                             ) from None
        problem = result_problem(job_id, data, self.job_dir(job_id))
        return (None, problem) if problem else (data, None)

    def load_result(self, job_id: str) -> dict | None:
        """The parsed result when it proves the job done (:meth:`read_result`), else None."""
        return self.read_result(job_id)[0]

    def is_done(self, job_id: str) -> bool:
        return self.load_result(job_id) is not None

    def write_result(self, job_id: str, result: dict) -> None:
        atomic_write_json(self.result_path(job_id), result)

    def set_aside_corrupt_result(self, job_id: str) -> tuple[Path, str] | None:
        """Move a result.json that does not prove its job done (:meth:`read_result`) out of
        the way, so the job runs again; return where it went and why.  A symbolic link in
        its place is bad input (InputError): the runner writes no file through a link."""
        path = self.result_path(job_id)
        try:
            os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:   # its folder cannot be searched: not "no result"
            raise _unreadable(path.parent, exc) from None
        if path.is_symlink():
            raise InputError(str(path), f"a symbolic link (to {os.path.realpath(path)}); a "
                             "job's result.json must be its own file: remove the link")
        data, problem = self.read_result(job_id)
        if data is not None or problem is None:
            return None
        dest = path.with_name(f"result.corrupt-{int(time.time())}-{uuid.uuid4().hex[:6]}.json")
        try:
            os.replace(path, dest)
        except FileNotFoundError:
            return None
        return dest, problem

    # -- snapshot ----------------------------------------------------------------
    def snapshot(self, job_ids, verify: bool = False) -> Snapshot:
        """One look at the ledger.  ``verify``: a job is done only when its result.json
        proves it (:meth:`read_result`: parses, names the job, its predictions' digests
        match) -- what ``status`` and ``plan`` report; without it a result.json that exists
        is done (a run checks every result once when it starts: set_aside_corrupt_result).
        A results, job or ledger folder that cannot be read is bad input (InputError)."""
        wanted = set(job_ids)
        now = time.time()
        started: set[str] = set()
        try:
            with os.scandir(self.root) as it:
                for entry in it:
                    if entry.name in wanted and entry.is_dir():
                        started.add(entry.name)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _unreadable(self.root, exc) from None
        # A result file is written atomically, so "exists" is "complete" here; the
        # executor parses every result once when it starts (set_aside_corrupt_result).
        root = os.fspath(self.root)   # plain strings: pathlib costs more than the stat
        done = {j for j in started if _exists(f"{root}/{j}/result.json")}
        if verify:
            done = {j for j in done if self.read_result(j)[0] is not None}
        failed = {j for j in _names(self.failed, ".json") if j in wanted}
        gens: dict[str, int] = {}
        for name in _names(self.claims, ".claim"):
            job_id, _, gen = name.rpartition(".")
            if job_id in wanted and job_id not in done and gen.isdigit() \
                    and int(gen) > gens.get(job_id, -1):
                gens[job_id] = int(gen)
        claims = {j: self._claim_state(j, g, now) for j, g in gens.items()}
        return Snapshot(done=done, started=started, failed=failed, claims=claims,
                        taken_at=now)

    def _claim_state(self, job_id: str, gen: int, now: float) -> ClaimState:
        path = self.claims / f"{job_id}.{gen}.claim"
        info = _read_json(path)
        if not isinstance(info, dict):
            # cannot happen with link()-published claims; treat it by its age
            try:
                info = {"claimed_at": path.stat().st_mtime}
            except OSError:
                info = {"claimed_at": 0.0}
        last = float(info.get("claimed_at", 0.0))
        beat = _read_json(self.beats / f"{job_id}.{gen}.json")
        if beat is None:   # a ledger written before heartbeats were per generation
            beat = _read_json(self.beats / f"{job_id}.json")
        progress: dict = {}
        released = False
        if isinstance(beat, dict) and beat.get("gen") == gen and beat.get("token") == info.get(
                "token"):
            last = max(last, float(beat.get("time", 0.0)))
            progress = beat.get("progress") or {}
            released = bool(beat.get("released"))
        lease = float(info.get("lease_s", self.lease_s))
        if released:
            status = "released"
        elif _owner_dead(info):
            status = "stale"   # its process is gone: no need to wait for the lease
        elif now - last > lease:
            status = "stale"
        else:
            status = "running"
        return ClaimState(gen=gen, info=info, last_beat=last, progress=progress, status=status)

    # -- claims ------------------------------------------------------------------
    def try_claim(self, job_id: str, worker: Worker, seen: ClaimState | None) -> Claim | None:
        """Claim a job nobody holds (``seen`` None) or take over a stale/released claim.

        Returns the claim, or None when another worker got there first.
        """
        if seen is not None and seen.status == "running":
            return None
        gen = 0 if seen is None else seen.gen + 1
        token = uuid.uuid4().hex
        info = {"job_id": job_id, "gen": gen, "token": token, "worker": worker.worker_id,
                "host": worker.host, "pid": worker.pid, "machine": MACHINE,
                "claimed_at": time.time(), "lease_s": self.lease_s}
        self.ensure()
        tmp = self.tmp / f".{job_id}.{gen}.{token}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(json.dumps(info, sort_keys=True).encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        target = self.claims / f"{job_id}.{gen}.claim"
        try:
            os.link(tmp, target)
            won = True
        except FileExistsError:
            won = False
        except OSError:
            # NFS may report failure for a link that succeeded: check who owns the name
            won = (_read_json(target) or {}).get("token") == token
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if not won:
            return None
        fsync_dir(self.claims)
        return Claim(job_id=job_id, gen=gen, token=token, worker=worker.worker_id)

    def abandoned_after_s(self, claim: Claim) -> float:
        """Seconds a temporary file in the job's folder must have gone unmodified before the
        owner of ``claim`` may remove it as the leftover of an interrupted write.

        0 when every earlier owner of the job is known to be gone (it released its claim, or
        its process is dead on this machine); else the longest lease among the earlier owners
        that may be alive: one whose lease expired has lost the job, but may still be in the
        middle of writing a file."""
        now, wait = time.time(), 0.0
        for name in _names(self.claims, ".claim"):
            job_id, _, gen = name.rpartition(".")
            if job_id != claim.job_id or not gen.isdigit() or int(gen) >= claim.gen:
                continue
            state = self._claim_state(job_id, int(gen), now)
            if state.status != "released" and not _owner_dead(state.info):
                wait = max(wait, float(state.info.get("lease_s", self.lease_s)))
        return wait

    def lost(self, claim: Claim) -> bool:
        """True when another worker took the job over (a newer generation exists)."""
        return (self.claims / f"{claim.job_id}.{claim.gen + 1}.claim").exists()

    def owns(self, claim: Claim) -> bool:
        """The fencing check: the ledger still names ``claim`` as the job's owner
        -- its claim file is there with its token and no newer generation exists.  A
        deleted claim file lets another worker claim the same generation with another
        token; watching for a newer generation alone missed that."""
        info = _read_json(self.claims / f"{claim.job_id}.{claim.gen}.claim")
        return isinstance(info, dict) and info.get("token") == claim.token \
            and not self.lost(claim)

    def heartbeat(self, claim: Claim, progress: dict, released: bool = False) -> None:
        atomic_write_json(self.beats / f"{claim.job_id}.{claim.gen}.json",
                          {"gen": claim.gen, "token": claim.token, "worker": claim.worker,
                           "time": time.time(), "progress": progress, "released": released},
                          indent=None)

    def release(self, claim: Claim, progress: dict | None = None) -> None:
        """Give the job back (interrupted or failed): anyone may take it over at once."""
        if self.owns(claim):   # never over another owner's heartbeat of the same generation
            self.heartbeat(claim, progress or {}, released=True)

    def finish(self, job_id: str) -> None:
        """Remove the bookkeeping of a done job (its result.json is the proof now)."""
        for name in _names(self.claims, ".claim"):
            if name.rpartition(".")[0] == job_id:
                _unlink(self.claims / f"{name}.claim")
        for name in _names(self.beats, ".json"):
            if name == job_id or name.rpartition(".")[0] == job_id:
                _unlink(self.beats / f"{name}.json")
        _unlink(self.failed / f"{job_id}.json")

    # -- failures and durations ---------------------------------------------------
    def record_failure(self, job_id: str, reason: str, worker: str) -> None:
        one_line = " ".join(str(reason).split())[:500] or "failed (no reason given)"
        atomic_write_json(self.failed / f"{job_id}.json",
                          {"reason": one_line, "worker": worker, "time": time.time()})

    def clear_failure(self, job_id: str) -> None:
        _unlink(self.failed / f"{job_id}.json")

    def failure(self, job_id: str) -> dict:
        data = _read_json(self.failed / f"{job_id}.json")
        return data if isinstance(data, dict) else {"reason": "unreadable failure record"}

    def record_duration(self, job_id: str, experiment: str, seconds: float) -> None:
        atomic_write_json(self.durations_dir / f"{job_id}.json",
                          {"experiment": experiment, "seconds": round(seconds, 3)}, indent=None)

    def durations(self) -> dict[str, list[float]]:
        """Seconds of finished jobs per experiment, for --time-budget estimates."""
        out: dict[str, list[float]] = {}
        for experiment, seconds in self.job_durations().values():
            out.setdefault(experiment, []).append(seconds)
        return out

    def job_durations(self) -> dict[str, tuple[str, float]]:
        """job_id -> (experiment, seconds) of each finished job (the study ETA's measure)."""
        out: dict[str, tuple[str, float]] = {}
        for name in _names(self.durations_dir, ".json"):
            data = _read_json(self.durations_dir / f"{name}.json")
            if isinstance(data, dict) and isinstance(data.get("seconds"), (int, float)):
                out[name] = (str(data.get("experiment")), float(data["seconds"]))
        return out


def _owner_dead(info: dict) -> bool:
    """The claim's process is known to be gone (same machine, its pid no longer running)."""
    return info.get("machine") == MACHINE and isinstance(info.get("pid"), int) \
        and not pid_alive(info["pid"])


def _names(folder: Path, suffix: str) -> list[str]:
    """Names (without suffix) of the finished files in a folder; [] when it is absent;
    InputError when it cannot be read (a ledger folder without read permission)."""
    try:
        with os.scandir(folder) as it:
            return [e.name[: -len(suffix)] for e in it
                    if e.name.endswith(suffix) and not e.name.startswith(".")]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _unreadable(folder, exc) from None


def _unreadable(path: str | Path, exc: OSError) -> InputError:
    return InputError(str(path), f"cannot read it ({exc.strerror or exc}); fix its "
                      "permissions")


def _exists(path: str) -> bool:
    """Whether ``path`` exists; InputError when its folder cannot be searched (a finished
    job's folder without permission must not look unfinished and be trained again)."""
    try:
        os.stat(path)
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise _unreadable(os.path.dirname(path), exc) from None


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
