"""Files that exist are finished, and files read are bounded.

Writes go to a temporary name in the same folder: flush, fsync, rename, fsync the folder.
A reader therefore sees either the old file or the complete new one, never half of it,
even after ``kill -9`` or a power cut (the folder's fsync makes the rename itself durable).
Reads check the file is a regular one and read at most a bound, so a result file linked to
a device or a fifo is refused with one line instead of blocking or filling memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mtl_contract.schema import MAX_JSON_BYTES

# atomic_write_bytes' temporary names: "." + the file's name + "." + mkstemp's 8 random
# characters + ".tmp"; remove_temp_files matches exactly these
_TEMP_SUFFIX = ".tmp"
_TEMP_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


# ------------------------------------------------------------------------------- writing
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
    """Write ``data`` so a reader sees the old file or the whole new one, never half."""
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
    """JSON with sorted keys; ``allow_nan=False`` so a NaN can never reach the file."""
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


def folder_problem(path: str | os.PathLike, write: bool = True) -> str | None:
    """Why ``path`` cannot serve as an output folder (a message for a one-line error), or None.

    It, or the nearest part of it that exists, must be a folder, not a file; and a folder
    must be creatable there -- probed with a temporary one, removed at once, because only
    trying tells (``/proc``, read-only mounts, and root passes every permission check).
    With ``write`` false (runner plan, status: they only read) a folder that exists is not
    probed.
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


# ------------------------------------------------------------------------------- reading
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


# ------------------------------------------------------------------------ digests, values
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_bytes), b""):
            h.update(block)
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    """The one canonical JSON used for hashing (job ids): sorted keys, no spaces, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def json_safe(obj: Any, *, str_keys: bool = False) -> Any:
    """A copy in plain JSON types: NaN / inf (e.g. Pearson of a constant prediction) become
    null, numpy scalars Python numbers and bools, paths strings; with ``str_keys`` every
    dict key a string (statistics.json's tuple-free keys).

    numpy is never imported here: where it is not loaded, no value can be one of its types."""
    if isinstance(obj, dict):
        return {(str(k) if str_keys else k): json_safe(v, str_keys=str_keys)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, str_keys=str_keys) for v in obj]
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(obj, np.floating):
            return float(obj) if math.isfinite(obj) else None
        if isinstance(obj, np.integer):
            return int(obj)
        if isinstance(obj, np.bool_):
            return bool(obj)
    return obj
