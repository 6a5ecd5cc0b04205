"""Files that exist are finished: atomic writes and checksums.

Write to a temporary name in the same folder, flush, fsync, rename, fsync the folder.
A reader therefore sees either the old file or the complete new one, never half of it,
even after ``kill -9`` or a power cut.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

# atomic_write_bytes' temporary names: "." + the file's name + "." + mkstemp's 8 random
# characters + ".tmp"; remove_temp_files matches exactly these
_TEMP_SUFFIX = ".tmp"
_TEMP_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so a rename inside it survives a crash (no-op where unsupported)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TEMP_SUFFIX, dir=path.parent)
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
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False) + "\n")


def remove_temp_files(folder: str | os.PathLike, untouched_for_s: float = 0.0) -> list[Path]:
    """Remove the temporary files that interrupted atomic writes left under ``folder`` (its
    subfolders too, except hidden ones: those are whole temporary folders with their own
    clean-up), if not modified for ``untouched_for_s`` seconds; return what was removed.

    The caller decides ``untouched_for_s``: 0 only when nobody else can be writing there."""
    removed = []
    cutoff = time.time() - untouched_for_s
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(parent) / name
            try:
                if _TEMP_RE.match(name) and (untouched_for_s <= 0
                                             or path.stat().st_mtime <= cutoff):
                    path.unlink()
                    removed.append(path)
            except OSError:   # renamed meanwhile by its writer, or not ours to remove
                continue
    return removed


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_bytes), b""):
            h.update(block)
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    """The one canonical JSON used for hashing: sorted keys, no spaces, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
