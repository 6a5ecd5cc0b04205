"""Atomic output files and the one bad-input error of ``stats``.

``stats`` never imports ``runner`` (the paper must rebuild from a copied results folder with
no torch), so it keeps its own copy of the small things it needs: write to a temporary
name in the same folder, fsync, rename; check that an output folder can be one; and an
error that names the file and the place.
"""

from __future__ import annotations

import io
import json
import os
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
