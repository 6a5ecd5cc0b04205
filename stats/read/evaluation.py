"""RQ3 evaluation files: ``<job_dir>/evaluation/<level>.json`` (schema ``evaluation/1``,
results/README.md "RQ3 evaluation"), one per finished job and precision level, ``status``
"ok" with the measurements or "skipped" with the reason."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl_contract.schema import EVALUATION_DIR, EVALUATION_SCHEMA, LEVELS
from stats.read.results import JobResult, Skipped
from stats.read.schema import Malformed, check_header, load_job_files

STATUSES = ("ok", "skipped")

_NUMBERS = ("latency_ms_per_example", "throughput_examples_per_s", "peak_memory_bytes",
            "size_on_disk_bytes")


@dataclass(frozen=True)
class Evaluation:
    """One evaluation/<level>.json of one job."""

    job: JobResult
    level: str
    status: str
    reason: str | None
    device: str | None
    batch_size: int | None
    latency_ms_per_example: float | None
    throughput_examples_per_s: float | None
    peak_memory_bytes: float | None
    size_on_disk_bytes: float | None
    per_task: dict[str, dict]  # task -> {primary_metric, metrics, n_test, calibration, ...}
    path: Path


def _num(v: Any, where: str, positive: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or (positive and v < 0):
        raise Malformed(f"{where}: expected a finite non-negative number, got {v!r}")
    return float(v)


def parse_evaluation(data: Any, path: Path, job: JobResult) -> Evaluation:
    """Validate one evaluation file (schema ``evaluation/1``); Malformed names the bad key."""
    check_header(data, EVALUATION_SCHEMA, "job_id", job.job_id)
    level = data.get("level")
    if level not in LEVELS:
        raise Malformed(f"level: {level!r} is not one of {LEVELS}")
    status = data.get("status")
    if status not in STATUSES:
        raise Malformed(f"status: {status!r} is not one of {STATUSES}")
    if status == "skipped":
        reason = data.get("reason")
        if not isinstance(reason, str) or not reason:
            raise Malformed("reason: a skipped level must say why")
        return Evaluation(job, level, status, reason, data.get("device"), None, None, None,
                          None, None, {}, path)
    nums = {k: _num(data.get(k), k) for k in _NUMBERS}
    per = data.get("per_task")
    if not isinstance(per, dict) or not per:
        raise Malformed("per_task: missing")
    clean = {}
    for task, entry in per.items():
        where = f"per_task.{task}."
        if not isinstance(entry, dict):
            raise Malformed(f"{where[:-1]}: expected an object")
        primary = entry.get("primary_metric")
        metrics = entry.get("metrics")
        if not isinstance(primary, str) or not isinstance(metrics, dict) or primary not in metrics:
            raise Malformed(f"{where}metrics: primary metric missing")
        _num(metrics[primary], f"{where}metrics.{primary}", positive=False)
        cal = entry.get("calibration")
        if cal is not None:
            if not isinstance(cal, dict):
                raise Malformed(f"{where}calibration: expected an object or null")
            for k in ("ece_before", "ece_after", "temperature"):
                _num(cal.get(k), f"{where}calibration.{k}")
        clean[task] = entry
    bs = data.get("batch_size")
    return Evaluation(job, level, status, None, data.get("device"),
                      bs if isinstance(bs, int) and not isinstance(bs, bool) else None,
                      nums["latency_ms_per_example"], nums["throughput_examples_per_s"],
                      nums["peak_memory_bytes"], nums["size_on_disk_bytes"], clean, path)


def load_evaluations(jobs: Sequence[JobResult]) -> tuple[list[Evaluation], list[Skipped]]:
    """Every ``<job_dir>/evaluation/<level>.json`` of the jobs; malformed ones skipped."""
    return load_job_files(jobs, EVALUATION_DIR, "*.json", parse_evaluation, "evaluation")
