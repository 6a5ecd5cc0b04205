"""The RQ2 held-out result file (results/README.md, "RQ2 held-out evaluation"):
``<job_dir>/heldout/<task>/seed<k>/heldout.json``; stats reads it.
"""

from __future__ import annotations

from pathlib import Path

from mtl_contract.files import atomic_write_json
from mtl_contract.schema import HELDOUT_DIR, HELDOUT_FILE, HELDOUT_SCHEMA
from runner.study.adapter import LoraSettings

TRAIN_MODES = ("head", "head_and_adapter")


def heldout_dir(job_dir, task: str, seed: int):
    """``<job_dir>/heldout/<task>/seed<k>/``: heldout.json and predictions/<task>.parquet."""
    return Path(job_dir) / HELDOUT_DIR / task / f"seed{int(seed)}"


def heldout_document(*, source_job_id: str, task: str, seed: int, train_mode: str,
                     adapter: LoraSettings | None, model_params: dict[str, int],
                     budget: dict, per_task_entry: dict, provenance: dict | None = None) -> dict:
    """One held-out evaluation of a finished job's encoder.

    ``per_task_entry`` is the job's per_task format (primary_metric, metrics, tokens, n_test,
    stat_spec, predictions = "predictions/<task>.parquet", relative to the heldout folder).
    ``budget``: {"max_steps", "max_train_examples", "steps", "examples", "tokens"}.
    """
    if train_mode not in TRAIN_MODES:
        raise ValueError(f"train_mode must be one of {TRAIN_MODES}, got {train_mode!r}")
    if train_mode == "head_and_adapter" and adapter is None:
        raise ValueError("train_mode head_and_adapter needs the adapter settings")
    if per_task_entry.get("primary_metric") not in per_task_entry.get("metrics", {}):
        raise ValueError("per_task_entry: primary metric missing from metrics")
    if set(model_params) != {"total", "trainable"}:
        raise ValueError("model_params must be {'total', 'trainable'}")
    return {"schema": HELDOUT_SCHEMA, "source_job_id": source_job_id, "task": task,
            "seed": int(seed), "train_mode": train_mode,
            "adapter": None if adapter is None else adapter.to_dict(),
            "model_params": {k: int(v) for k, v in model_params.items()},
            "budget": dict(budget), "per_task": {task: per_task_entry},
            "provenance": dict(provenance or {})}


def write_heldout(job_dir, doc: dict) -> None:
    """Atomically write heldout.json last (the predictions must already be in place)."""
    atomic_write_json(heldout_dir(job_dir, doc["task"], doc["seed"]) / HELDOUT_FILE, doc)
