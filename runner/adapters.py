"""LoRA adapters for RQ2: manifest table -> peft config, parameter counts, rank matching.

A LoRA'd ``nn.Linear`` (in -> out features) gains ``A: r x in`` and ``B: out x r``, i.e.
``r * (in + out)`` trainable parameters (bias frozen, ``bias="none"``); the base weights are
frozen.  A job's trainable parameters are therefore ``r * per_rank + heads`` where
``per_rank = sum over LoRA'd Linears of (in + out)`` and ``heads`` are the task heads' own
parameters (always trained).  Parameter matching (RQ2) picks the single-task rank whose count
is closest to the multi-task run's, which is linear in r, so the answer is exact, not searched.

torch / peft / transformers are imported inside the functions that need them, so a manifest
can be validated without them.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import asdict, dataclass
from typing import Any

from runner.errors import InputError

ADAPTER_KEYS = ("method", "r", "alpha", "dropout", "target_modules")
DEFAULT_TARGET_MODULES = ("query", "value")  # Hu et al. 2021's choice for attention


@dataclass(frozen=True)
class LoraSettings:
    """One LoRA adapter as the manifest states it (``[experiments.X.adapter]``)."""
    r: int  # rank of the update B @ A
    alpha: float  # scaling numerator: the update is scaled by alpha / r
    dropout: float  # dropout on the adapter input, in [0, 1)
    target_modules: tuple[str, ...]  # Linear names matched by suffix (peft's rule)
    method: str = "lora"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


def settings_from_table(table: Any, file: str | None = None,
                        where: str = "adapter") -> LoraSettings:
    """Validate a manifest's adapter table; unknown keys and wrong types are InputErrors.

    Keys: ``method = "lora"`` (optional), ``r`` (int >= 1), ``alpha`` (number > 0, default 2r),
    ``dropout`` (0 <= x < 1, default 0.1), ``target_modules`` (non-empty list of names,
    default ["query", "value"]).
    """
    if not isinstance(table, dict):
        raise InputError(file, f"expected a table, got {type(table).__name__}", where=where)
    unknown = sorted(set(table) - set(ADAPTER_KEYS))
    if unknown:
        raise InputError(file, f"unknown key(s) {', '.join(unknown)}; allowed: "
                               f"{', '.join(ADAPTER_KEYS)}", where=where)
    method = table.get("method", "lora")
    if method != "lora":
        raise InputError(file, f"only method = \"lora\" is supported, got {method!r}",
                         where=f"{where}.method")
    r = table.get("r")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise InputError(file, f"r must be an integer >= 1, got {r!r}", where=f"{where}.r")
    alpha = table.get("alpha", 2 * r)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise InputError(file, f"alpha must be a number > 0, got {alpha!r}",
                         where=f"{where}.alpha")
    dropout = table.get("dropout", 0.1)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not 0 <= dropout < 1:
        raise InputError(file, f"dropout must be in [0, 1), got {dropout!r}",
                         where=f"{where}.dropout")
    targets = table.get("target_modules", list(DEFAULT_TARGET_MODULES))
    if not isinstance(targets, list) or not targets or \
            not all(isinstance(t, str) and t for t in targets):
        raise InputError(file, f"target_modules must be a non-empty list of module names, "
                               f"got {targets!r}", where=f"{where}.target_modules")
    return LoraSettings(r=r, alpha=float(alpha), dropout=float(dropout),
                        target_modules=tuple(targets))


@contextlib.contextmanager
def _bitsandbytes_hidden():
    """peft imports bitsandbytes whenever it is installed (for quantised LoRA layers, which no
    job here has); that import is slow and prints a kernel warning on some CPUs, so peft sees
    it as absent while it is imported and wraps an encoder.  Where it is already imported
    (an nf4 evaluation) nothing changes."""
    if "bitsandbytes" in sys.modules:
        yield
        return
    sys.modules["bitsandbytes"] = None     # import raises ImportError, find_spec gives None
    try:
        yield
    finally:
        if "bitsandbytes" in sys.modules and sys.modules["bitsandbytes"] is None:
            del sys.modules["bitsandbytes"]


def to_peft_config(settings: LoraSettings):
    """``peft.LoraConfig`` for an encoder (heads are separate modules, trained in full)."""
    with _bitsandbytes_hidden():
        from peft import LoraConfig

    return LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=list(settings.target_modules), bias="none")


def apply_lora(encoder, settings: LoraSettings):
    """Wrap an ``AutoModel`` encoder: base weights frozen, LoRA A/B trainable."""
    names = _matched_linears(encoder, settings.target_modules)
    if not names:
        raise InputError(None, f"no Linear module of the encoder matches "
                               f"{list(settings.target_modules)}", where="adapter.target_modules")
    with _bitsandbytes_hidden():
        from peft import get_peft_model
        return get_peft_model(encoder, to_peft_config(settings))


def count_parameters(*modules) -> dict[str, int]:
    """{"total", "trainable"} over the given modules (shared tensors counted once)."""
    seen: set[int] = set()
    total = trainable = 0
    for m in modules:
        for p in m.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            total += p.numel()
            if p.requires_grad:
                trainable += p.numel()
    return {"total": int(total), "trainable": int(trainable)}


def _matches(name: str, targets) -> bool:
    """peft's list rule: the module's full name equals a target or ends with ``.target``."""
    return any(name == t or name.endswith("." + t) for t in targets)


def _matched_linears(model, targets) -> dict[str, tuple[int, int]]:
    import torch

    return {name: (m.in_features, m.out_features) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and _matches(name, targets)}


def lora_params_per_rank(encoder_config, target_modules) -> int:
    """sum over LoRA'd Linears of (in + out), from the config alone (model built on "meta")."""
    import torch
    from transformers import AutoModel

    with torch.device("meta"):  # shapes only: no memory, no weights
        model = AutoModel.from_config(encoder_config)
    shapes = _matched_linears(model, tuple(target_modules))
    if not shapes:
        raise InputError(None, f"no Linear module of {type(model).__name__} matches "
                               f"{list(target_modules)}", where="adapter.target_modules")
    return int(sum(i + o for i, o in shapes.values()))


def lora_trainable(encoder_config, target_modules, r: int, heads_params: int = 0) -> int:
    """Trainable parameters of an encoder with a rank-r LoRA plus heads (module docstring)."""
    return r * lora_params_per_rank(encoder_config, target_modules) + int(heads_params)


@dataclass(frozen=True)
class RankMatch:
    r: int  # the chosen single-task rank
    trainable: int  # its trainable parameters (LoRA + heads)
    target_trainable: int  # the multi-task run's trainable parameters
    relative_gap: float  # |trainable - target| / target

    def to_dict(self) -> dict:
        return asdict(self)


def match_rank(target_trainable: int, encoder_config, target_modules, heads_params: int,
               max_rank: int = 1024) -> RankMatch:
    """The rank r in [1, max_rank] whose ``r * per_rank + heads_params`` is closest to target.

    Ties go to the smaller rank.  ``relative_gap`` says how close it lands; it is large when
    even r = 1 overshoots (heads alone bigger than the target) or max_rank undershoots.
    """
    if target_trainable <= 0:
        raise InputError(None, f"target trainable parameters must be > 0, got "
                               f"{target_trainable}", where="adapter.match")
    per_rank = lora_params_per_rank(encoder_config, target_modules)
    ideal = (target_trainable - heads_params) / per_rank
    floor = int(ideal // 1)
    candidates = {min(max(c, 1), max_rank) for c in (floor, floor + 1)}
    best = min(sorted(candidates),
               key=lambda r: abs(r * per_rank + heads_params - target_trainable))
    trainable = best * per_rank + int(heads_params)
    return RankMatch(r=best, trainable=trainable, target_trainable=int(target_trainable),
                     relative_gap=abs(trainable - target_trainable) / target_trainable)


# --------------------------------------------------------------------------------------------
# The RQ2 held-out result file (results/README.md, "RQ2 held-out evaluation"); stats/rq2.py
# reads it
# --------------------------------------------------------------------------------------------

HELDOUT_SCHEMA = "heldout/1"
HELDOUT_FILE = "heldout.json"
TRAIN_MODES = ("head", "head_and_adapter")


def heldout_dir(job_dir, task: str, seed: int):
    """``<job_dir>/heldout/<task>/seed<k>/``: heldout.json and predictions/<task>.parquet."""
    from pathlib import Path

    return Path(job_dir) / "heldout" / task / f"seed{int(seed)}"


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
    from runner.fsutil import atomic_write_json

    atomic_write_json(heldout_dir(job_dir, doc["task"], doc["seed"]) / HELDOUT_FILE, doc)
