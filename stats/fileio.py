"""Atomic output files and the one bad-input error of ``stats``.

``stats`` never imports ``runner`` (the paper must rebuild from a copied results folder with
no torch), so it keeps its own copy of the small things it needs: write to a temporary
name in the same folder, fsync, rename; check that an output folder can be one; and an
error that names the file and the place.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_BAD_INPUT = 2  # same meaning as runner.errors.EXIT_BAD_INPUT


class StatsInputError(Exception):
    """Bad input to ``python -m stats``; ``str(err)`` is one line ``FILE: WHERE: MESSAGE``."""

    def __init__(self, file: str | os.PathLike | None, message: str, where: str | None = None):
        self.file = None if file is None else str(file)
        self.where = where
        self.message = message
        parts = [p for p in (self.file, where) if p]
        super().__init__(": ".join(parts + [message]).replace("\n", " "))


# the largest result.json / held-out / evaluation / contamination file read (bytes): the
# biggest real one is well under a megabyte; a file larger than this is not one of ours
# (a result.json symlinked to /dev/zero must not be read until the kernel kills us)
MAX_JSON_BYTES = 64 << 20


class FileTooLarge(ValueError):
    """A file to read is not a regular file or is larger than its bound (one-line message)."""


def read_bounded(path: str | os.PathLike, limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; :class:`FileTooLarge` for a
    device, a fifo or a larger file (checked on the open file, then by reading one byte
    more than the bound, so a file that grows meanwhile is caught too); OSError as open()."""
    with open(path, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise FileTooLarge("not a regular file")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"larger than {limit} bytes")
    return data


def read_json_bounded(path: str | os.PathLike, limit: int = MAX_JSON_BYTES) -> Any:
    """Parsed JSON of a bounded regular file (see :func:`read_bounded`); ValueError for bad
    JSON or a file past its bound (or nested too deep to parse), OSError as open()."""
    try:
        return json.loads(read_bounded(path, limit))
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def folder_problem(path: str | os.PathLike, write: bool = True) -> str | None:
    """Why ``path`` cannot serve as an output folder (a message for a one-line error), or None.

    It, or the nearest part of it that exists, must be a folder, not a file; and a folder
    must be creatable there -- probed with a temporary one, removed at once, because only
    trying tells (``/proc``, read-only mounts, and root passes every permission check).
    With ``write`` false (runner plan, status: they only read) a folder that exists is not
    probed.  The runner uses this one too (stats imports no runner; the runner may import stats).
    """
    path = Path(path)
    existing = path.absolute()
    try:
        while not existing.exists():    # False under a regular file (ENOTDIR) as well
            existing = existing.parent
        if not existing.is_dir():
            if existing == path.absolute():
                return "is a file, not a folder"
            return f"{existing} is a file, not a folder"
        if write or existing != path.absolute():
            os.rmdir(tempfile.mkdtemp(prefix=".write-probe-", dir=existing))
    except OSError as err:
        return f"cannot create a folder in {existing} ({err.strerror or err})"
    return None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` so a reader sees the old file or the whole new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON with sorted keys; ``allow_nan=False`` so a NaN can never reach the file."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def atomic_savefig(fig: Any, path: str | os.PathLike, **kwargs: Any) -> None:
    """Save a matplotlib figure atomically (format taken from the final suffix): rendered in
    memory, then written like any other file."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip("."), **kwargs)
    atomic_write_bytes(path, buf.getvalue())
