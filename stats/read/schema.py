"""What every per-job file reader (held-out, evaluation) shares: finding the files in each
job's folder, the error naming a bad key, and the header check (schema, and the id of the
job whose folder holds the file)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mtl_contract.files import read_json_bounded
from stats.read.results import JobResult, Skipped

T = TypeVar("T")


class Malformed(ValueError):
    """One held-out or evaluation file does not follow its schema (message names the key)."""


def need(obj: dict, key: str, types, where: str):
    """``obj[key]`` when it is of ``types`` (never a bool), else :class:`Malformed`."""
    v = obj.get(key)
    if v is None or isinstance(v, bool) or not isinstance(v, types):
        raise Malformed(f"{where}{key}: missing or not {getattr(types, '__name__', types)}")
    return v


def check_header(data: Any, schema: str, id_key: str, job_id: str) -> dict:
    """``data`` as a dict after checking its schema and that ``data[id_key]`` names the
    enclosing job (a file copied into another job's folder would pair the wrong runs)."""
    if not isinstance(data, dict):
        raise Malformed("top level: expected a JSON object")
    if data.get("schema") != schema:
        raise Malformed(f"schema: expected {schema!r}, got {data.get('schema')!r}")
    if data.get(id_key) != job_id:
        raise Malformed(f"{id_key}: {data.get(id_key)!r} is not the enclosing job {job_id!r}")
    return data


def load_job_files(jobs: Sequence[JobResult], subdir: str, pattern: str,
                   parse: Callable[[Any, Path, JobResult], T], what: str
                   ) -> tuple[list[T], list[Skipped]]:
    """``parse(json, path, job)`` of every ``<job_dir>/<subdir>/<pattern>`` of the jobs
    (sorted); a file that cannot be read or parsed is skipped with its path and why."""
    parsed, skipped = [], []
    for job in jobs:
        root = Path(job.path).parent / subdir
        if not root.is_dir():
            continue
        for path in sorted(root.glob(pattern)):
            try:
                parsed.append(parse(read_json_bounded(path), path, job))
            except (OSError, UnicodeDecodeError, ValueError) as err:
                skipped.append(Skipped(str(path), f"malformed {what}: {err}"))
    return parsed, skipped
