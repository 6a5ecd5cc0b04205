"""The RQ3 evaluation file (results/README.md, "RQ3 evaluation"):
``<job_dir>/evaluation/<level>.json``, one per precision level; stats reads it.  No numpy.
The schema, the folder and the levels are the contract's (mtl_contract.schema).
"""

from __future__ import annotations

import math
from pathlib import Path

from mtl_contract.files import atomic_write_json
from mtl_contract.schema import EVALUATION_DIR, EVALUATION_SCHEMA, LEVELS


def evaluation_path(job_dir, level: str):
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return Path(job_dir) / EVALUATION_DIR / f"{level}.json"


def skipped_evaluation(job_id: str, level: str, reason: str, device: str | None = None,
                       environment: dict | None = None) -> dict:
    """A level that could not run here (e.g. nf4 without CUDA/bitsandbytes), with why (one
    line) and, when given, the ``environment`` it was decided under (a rerun under another
    one tries the level again)."""
    if level not in LEVELS or not reason or "\n" in reason:
        raise ValueError("a skipped evaluation needs a known level and a one-line reason")
    doc = {"schema": EVALUATION_SCHEMA, "job_id": job_id, "level": level,
           "status": "skipped", "reason": reason, "device": device}
    if environment is not None:
        doc["environment"] = dict(environment)
    return doc


def evaluation_document(job_id: str, level: str, *, device: str, batch_size: int,
                        latency_ms_per_example: float, throughput_examples_per_s: float,
                        peak_memory_bytes: int, size_on_disk_bytes: int,
                        per_task: dict[str, dict], provenance: dict | None = None) -> dict:
    """One evaluated level.  ``per_task[task]`` = {"primary_metric", "metrics", "n_test",
    "calibration": calibration_report(...) or None, "calibration_reason": None or why}."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    numbers = {"latency_ms_per_example": latency_ms_per_example,
               "throughput_examples_per_s": throughput_examples_per_s,
               "peak_memory_bytes": peak_memory_bytes, "size_on_disk_bytes": size_on_disk_bytes}
    for k, v in numbers.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{k} must be a finite number >= 0, got {v!r}")
    if not per_task:
        raise ValueError("per_task is empty")
    for task, entry in per_task.items():
        if entry.get("primary_metric") not in entry.get("metrics", {}):
            raise ValueError(f"per_task.{task}: primary metric missing from metrics")
        if entry.get("calibration") is None and not entry.get("calibration_reason"):
            raise ValueError(f"per_task.{task}: no calibration and no calibration_reason")
    return {"schema": EVALUATION_SCHEMA, "job_id": job_id, "level": level, "status": "ok",
            "reason": None, "device": device, "batch_size": int(batch_size), **numbers,
            "per_task": per_task, "provenance": dict(provenance or {})}


def write_evaluation(job_dir, doc: dict) -> None:
    """Atomically write ``<job_dir>/evaluation/<level>.json`` (a file that exists is done)."""
    atomic_write_json(evaluation_path(job_dir, doc["level"]), doc)
