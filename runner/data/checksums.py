"""``<data>/SHA256SUMS``: the one reader and writer of the prepared data's checksums.

The format is ``sha256sum``'s: one ``<64 hex digits>  <path relative to data/>`` line per
file (``sha256sum -c SHA256SUMS`` checks it; a ``*`` before the path, binary mode, is
accepted).  ``python -m runner prepare`` writes it (:func:`checksums_text`); planning reads it
to put each job's data into its id (:func:`job_checksums`), and the executor and
``runner.data.splits.verify_checksums`` read it again to compare the files before a job trains.

Every reader is strict: a missing or unreadable file, a malformed line, a path listed twice
or a file a job reads without its line is an :class:`InputError` naming the file (and line
or entry).  A missing checksum must never mean "nothing to check".
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from mtl_contract.schema import CHECKSUMS_FILE
from runner.data.tasks import SPLITS
from runner.errors import InputError

PREPARE_HINT = "run `python -m runner prepare --source DIR --out DATA_DIR`"

_LINE_RE = re.compile(r"([0-9a-fA-F]{64}) [ *](\S.*)")


def checksums_text(sums: dict[str, str]) -> str:
    """``sha256sum -c`` format, sorted by path: '<hex>  <relative path>'."""
    return "".join(f"{digest}  {rel}\n" for rel, digest in sorted(sums.items()))


def data_folder(data_dir: str | os.PathLike) -> Path:
    """``data_dir`` as a Path; InputError when it is not an existing folder."""
    path = Path(data_dir)
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "no such folder"
        raise InputError(str(path), f"{what}; expected the prepared data with its {CHECKSUMS_FILE} "
                         f"({PREPARE_HINT})", where="--data-dir")
    return path


def read_checksums(data_dir: str | os.PathLike) -> dict[str, str]:
    """``<data_dir>/SHA256SUMS`` as {relative path: lower-case sha256}."""
    path = Path(data_dir) / CHECKSUMS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), f"checksum file missing: without it the data cannot be "
                         f"checked; {PREPARE_HINT}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"cannot read the checksums ({exc})") from None
    sums: dict[str, str] = {}
    for no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _LINE_RE.fullmatch(line.rstrip())
        if m is None:
            raise InputError(str(path), "expected '<sha256>  <path>' (sha256sum format)",
                             line=no)
        rel = m.group(2)
        if rel in sums:
            raise InputError(str(path), f"{rel} is listed twice", line=no)
        sums[rel] = m.group(1).lower()
    return sums


def task_files(task: str) -> list[str]:
    """The files of one task that jobs read, relative to the data folder."""
    return [f"{task}/{split}.parquet" for split in SPLITS]


def job_checksums(sums: dict[str, str], tasks: Iterable[str],
                  data_dir: str | os.PathLike) -> dict[str, str]:
    """{relative path: sha256} of every file the tasks' jobs read, all of them listed in
    ``sums`` (read from ``data_dir``); InputError naming the first file without a line."""
    out: dict[str, str] = {}
    for task in tasks:
        for rel in task_files(task):
            if rel not in sums:
                raise InputError(str(Path(data_dir) / CHECKSUMS_FILE), f"no line for {rel}: the "
                                 f"data of task {task} cannot be checked; {PREPARE_HINT}")
            out[rel] = sums[rel]
    return out


def record_checksum(data_dir: Path, path: Path) -> None:
    """Add (or replace) the line of ``path`` (a file directly in ``data_dir``, derived from the
    prepared splits) in ``<data_dir>/SHA256SUMS``, the file kept sorted."""
    from mtl_contract.files import atomic_write_text, sha256_file

    sums = read_checksums(data_dir)
    sums[path.name] = sha256_file(path)
    atomic_write_text(Path(data_dir) / CHECKSUMS_FILE, checksums_text(sums))
