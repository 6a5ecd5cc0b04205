"""RQ2 held-out files: ``<job_dir>/heldout/<task>/seed<k>/heldout.json`` (schema ``heldout/1``,
results/README.md "RQ2 held-out evaluation"), each with the predictions it names."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl_contract.schema import HELDOUT_DIR, HELDOUT_FILE, HELDOUT_SCHEMA
from stats.read.results import JobResult, Skipped, TaskResult
from stats.read.schema import Malformed, check_header, load_job_files, need

TRAIN_MODES = ("head", "head_and_adapter")


@dataclass(frozen=True)
class HeldoutRun:
    """One held-out evaluation of one source job: a fresh head (and adapter) on ``task``."""

    source: JobResult
    task: str
    seed: int  # seed of the held-out head training
    train_mode: str  # "head" | "head_and_adapter"
    adapter: dict | None
    model_params: dict  # {"total", "trainable"} during held-out training
    budget: dict
    result: TaskResult
    path: Path


def parse_heldout(data: Any, path: Path, source: JobResult) -> HeldoutRun:
    """Validate one heldout.json (schema ``heldout/1``); :class:`Malformed` names the bad key."""
    check_header(data, HELDOUT_SCHEMA, "source_job_id", source.job_id)
    task = need(data, "task", str, "")
    seed = need(data, "seed", int, "")
    mode = need(data, "train_mode", str, "")
    if mode not in TRAIN_MODES:
        raise Malformed(f"train_mode: {mode!r} is not one of {TRAIN_MODES}")
    per = need(data, "per_task", dict, "")
    entry = per.get(task)
    if not isinstance(entry, dict):
        raise Malformed(f"per_task.{task}: missing")
    where = f"per_task.{task}."
    primary = need(entry, "primary_metric", str, where)
    metrics = need(entry, "metrics", dict, where)
    clean = {}
    for k, v in metrics.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise Malformed(f"{where}metrics.{k}: not a finite number")
        clean[str(k)] = float(v)
    if primary not in clean:
        raise Malformed(f"{where}metrics: primary metric {primary!r} missing")
    pred = entry.get("predictions")
    result = TaskResult(task=task, primary_metric=primary, metrics=clean,
                        tokens=entry.get("tokens") if isinstance(entry.get("tokens"), int) else None,
                        n_test=entry.get("n_test") if isinstance(entry.get("n_test"), int) else None,
                        stat_spec=entry.get("stat_spec") if isinstance(entry.get("stat_spec"), dict)
                        else None,
                        predictions_path=None if not isinstance(pred, str) else path.parent / pred)
    mp = data.get("model_params") if isinstance(data.get("model_params"), dict) else {}
    return HeldoutRun(source=source, task=task, seed=seed, train_mode=mode,
                      adapter=data.get("adapter") if isinstance(data.get("adapter"), dict) else None,
                      model_params=mp,
                      budget=data.get("budget") if isinstance(data.get("budget"), dict) else {},
                      result=result, path=path)


def load_heldout(jobs: Sequence[JobResult]) -> tuple[list[HeldoutRun], list[Skipped]]:
    """Every ``<job_dir>/heldout/*/seed*/heldout.json`` of the given jobs; bad ones skipped."""
    return load_job_files(jobs, HELDOUT_DIR, f"*/seed*/{HELDOUT_FILE}", parse_heldout,
                          "held-out result")
