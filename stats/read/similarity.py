"""RQ4 similarity file: ``task_similarity.json`` (schema ``task_similarity/1``, written by
``python -m runner similarity``): symmetric task x task matrices of values in [0, 1]."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from mtl_contract.files import read_json_bounded
from mtl_contract.schema import SIMILARITY_FILE, SIMILARITY_SCHEMA
from stats.fileio import StatsInputError
from stats.read.results import JobResult


def load_similarity(path: str | Path) -> dict:
    """Read and check a ``task_similarity.json`` (schema ``task_similarity/1``)."""
    path = Path(path)
    try:
        doc = read_json_bounded(path)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise StatsInputError(path, f"unreadable JSON: {err}") from err
    if not isinstance(doc, dict) or doc.get("schema") != SIMILARITY_SCHEMA:
        raise StatsInputError(path, f"expected schema {SIMILARITY_SCHEMA!r}", where="schema")
    tasks = doc.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks) \
            or len(set(tasks)) != len(tasks):
        raise StatsInputError(path, "expected a list of distinct task names", where="tasks")
    measures = doc.get("measures")
    if not isinstance(measures, dict) or not measures:
        raise StatsInputError(path, "expected an object of matrices", where="measures")
    n = len(tasks)
    for name, mat in measures.items():
        where = f"measures.{name}"
        if not isinstance(mat, list) or len(mat) != n or \
                any(not isinstance(r, list) or len(r) != n for r in mat):
            raise StatsInputError(path, f"expected a {n} x {n} matrix", where=where)
        for i, row in enumerate(mat):
            for j, v in enumerate(row):
                if v is None:
                    continue
                if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                        not math.isfinite(v) or not 0 <= v <= 1:
                    raise StatsInputError(path, f"[{i}][{j}] = {v!r} is not in [0, 1] or null",
                                          where=where)
                if mat[j][i] != v:
                    raise StatsInputError(path, f"not symmetric at [{i}][{j}]", where=where)
    return doc


def find_similarity_for_jobs(jobs: Sequence[JobResult]) -> Path | None:
    """``results/<study>/task_similarity.json`` beside the jobs' folders (first, sorted)."""
    for study_dir in sorted({Path(j.path).parent.parent for j in jobs}):
        if (study_dir / SIMILARITY_FILE).is_file():
            return study_dir / SIMILARITY_FILE
    return None


def similarity_value(doc: dict, measure: str, a: str, b: str) -> float | None:
    tasks = doc["tasks"]
    if a not in tasks or b not in tasks or measure not in doc["measures"]:
        return None
    return doc["measures"][measure][tasks.index(a)][tasks.index(b)]
