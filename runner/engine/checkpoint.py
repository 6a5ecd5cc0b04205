"""Resumable training state: :class:`TrainingProgress` plus numbered, checksummed folders.

``<job_dir>/checkpoints/``::

    checkpoint-<step>/        the latest resumable state (older ones are pruned)
        model.pt              model state_dict
        optimizer.pt          {"optimizer", "scheduler", "scaler"} state_dicts
        rng.pt                python / numpy / torch / CUDA generator states
        progress.json         TrainingProgress (step, epoch, data positions, sampler state,
                              token counters, early stopping, validation history, ...)
        checksums.json        sha256 of the four files above; written last
    best/                     the best validation weights (model.pt + meta.json)

A folder is written under a temporary name (``.tmp-...``), every file fsynced, then renamed:
a ``checkpoint-N`` that exists is complete.  A checkpoint whose checksums do not match (disk
trouble, a truncated copy off Kaggle) is skipped with a warning in favour of an older one, or
the job restarts from scratch.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from runner.fsutil import atomic_write_json, fsync_dir, sha256_file

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
FILES = ("model.pt", "optimizer.pt", "rng.pt", "progress.json")


@dataclass
class TrainingProgress:
    """Everything about where training stands that is not a tensor."""

    strategy: str
    tasks: list[str]
    batch_size: int                     # examples per micro-batch (halved after a CUDA OOM)
    grad_accumulation: int              # micro-batches per optimizer step
    total_steps: int                    # optimizer steps the scheduler decays over
    target_tokens: int | None = None    # token_controlled only
    step: int = 0                       # optimizer steps done
    micro_steps: int = 0                # batches fed
    positions: dict = field(default_factory=dict)  # task -> {"epoch": int, "index": int}:
    #                                     next batch = epoch_plan(..., epoch)[index]
    sampler_state: dict | None = None
    tokens_per_task: dict = field(default_factory=dict)    # real training tokens (int)
    examples_per_task: dict = field(default_factory=dict)  # training examples fed (int)
    batches_per_task: dict = field(default_factory=dict)   # micro-batches fed (int)
    train_loss_sum: float = 0.0         # sum of micro-batch losses
    best_score: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    stopped_early: bool = False
    finished: bool = False              # training loop done; only the test evaluation is left
    validation_history: list = field(default_factory=list)
    train_seconds: float = 0.0          # wall seconds in the training loop, over all resumes
    trimmed_examples: int = 0           # token_controlled: examples dropped from the last batch

    @property
    def token_count(self) -> int:
        return int(sum(self.tokens_per_task.values()))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TrainingProgress:
        return cls(**data)


def checkpoints_dir(job_dir: Path) -> Path:
    return Path(job_dir) / "checkpoints"


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def list_checkpoints(ckpt_root: Path) -> list[tuple[int, Path]]:
    """Finished checkpoint folders, newest (highest step) first."""
    if not ckpt_root.is_dir():
        return []
    found = []
    for p in ckpt_root.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def save_checkpoint(ckpt_root: Path, progress: TrainingProgress, model, optimizer, scheduler,
                    scaler, keep_last: int = 1) -> Path:
    """Write ``checkpoint-<step>/`` atomically, then prune to the ``keep_last`` newest."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-checkpoint-{progress.step}-", dir=ckpt_root))
    try:
        torch.save(model.state_dict(), tmp / "model.pt")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict()}, tmp / "optimizer.pt")
        torch.save(_rng_state(), tmp / "rng.pt")
        (tmp / "progress.json").write_text(json.dumps(progress.to_json(), allow_nan=True))
        for name in FILES:
            _fsync_file(tmp / name)
        atomic_write_json(tmp / "checksums.json", {n: sha256_file(tmp / n) for n in FILES})
        fsync_dir(tmp)
        final = ckpt_root / f"checkpoint-{progress.step}"
        if final.exists():  # same step saved again (evaluation and should_stop at one step)
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(ckpt_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in list_checkpoints(ckpt_root)[keep_last:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def verify_checkpoint(path: Path) -> str | None:
    """None when ``path`` is complete and intact, else why not (one line)."""
    sums_file = path / "checksums.json"
    try:
        sums = json.loads(sums_file.read_text())
    except (OSError, ValueError) as exc:
        return f"checksums.json unreadable ({exc.__class__.__name__})"
    for name in FILES:
        if not (path / name).is_file():
            return f"{name} missing"
        if sha256_file(path / name) != sums.get(name):
            return f"{name} does not match its checksum"
    return None


def load_latest_checkpoint(ckpt_root: Path, logger: logging.Logger | None = None):
    """The newest intact checkpoint as (path, progress, model_state, optim_states, rng), or None.

    Corrupt checkpoints are skipped with a warning; leftover temporary folders from a kill during
    a save are removed."""
    logger = logger or logging.getLogger("runner.job")
    if ckpt_root.is_dir():
        for p in ckpt_root.iterdir():
            if p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True)
    candidates = list_checkpoints(ckpt_root)
    for i, (step, path) in enumerate(candidates):
        problem = verify_checkpoint(path)
        if problem is None:
            try:
                progress = TrainingProgress.from_json(json.loads((path / "progress.json").read_text()))
                # our own files, checksummed above: full unpickling is safe and needed for RNG states
                model_state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
                optim = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
                rng = torch.load(path / "rng.pt", map_location="cpu", weights_only=False)
                return path, progress, model_state, optim, rng
            except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is skipped
                problem = f"unreadable ({exc.__class__.__name__}: {exc})"
        fallback = ("falling back to " + candidates[i + 1][1].name if i + 1 < len(candidates)
                    else "restarting the job from scratch")
        logger.warning("checkpoint %s is corrupt: %s; %s", path, problem, fallback)
    return None


def restore_rng(rng_state: dict) -> None:
    _set_rng_state(rng_state)


def save_best(ckpt_root: Path, model, meta: dict) -> None:
    """Replace ``best/`` (model.pt + meta.json with the weights' sha256) atomically enough:
    the new folder is complete before the old one is renamed away."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-best-", dir=ckpt_root))
    try:
        torch.save(model.state_dict(), tmp / "model.pt")
        _fsync_file(tmp / "model.pt")
        atomic_write_json(tmp / "meta.json", {**meta, "sha256": sha256_file(tmp / "model.pt")})
        best, old = ckpt_root / "best", ckpt_root / "best.old"
        if old.exists():
            shutil.rmtree(old)
        if best.exists():
            os.replace(best, old)
        os.replace(tmp, best)
        fsync_dir(ckpt_root)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_best(ckpt_root: Path) -> tuple[dict, dict] | None:
    """(meta, model_state) of ``best/`` (or of ``best.old/`` when a kill hit the swap)."""
    for name in ("best", "best.old"):
        path = ckpt_root / name
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        if sha256_file(path / "model.pt") != meta.get("sha256"):
            continue
        return meta, torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    return None


def prune_finished(ckpt_root: Path) -> None:
    """A finished job keeps only ``best/`` (RQ2/RQ3 evaluate those weights later)."""
    if not ckpt_root.is_dir():
        return
    for p in ckpt_root.iterdir():
        if p.name != "best":
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
