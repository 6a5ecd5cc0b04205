"""Resumable training state: :class:`TrainingProgress` plus numbered, checksummed folders.

``<job_dir>/checkpoints/``::

    checkpoint-<step>/        the latest resumable state (older ones are pruned)
        model.pt              model state_dict
        optimizer.pt          {"optimizer", "scheduler", "scaler"} state_dicts
        rng.pt                python / numpy / torch / CUDA generator states (numpy's as a
                              tensor, so the file holds nothing but tensors and plain values)
        progress.json         TrainingProgress (step, epoch, data positions, sampler state,
                              token counters, early stopping, validation history, ...)
        checksums.json        sha256 of the four files above; written last
    best/                     the best validation weights (model.pt + meta.json)

A folder is written under a temporary name (``.tmp-...``), every file fsynced, then renamed:
a ``checkpoint-N`` that exists is complete.  A checkpoint that is corrupt -- its checksums do
not match (disk trouble, a truncated copy off Kaggle), a file does not load, or its progress
names another job's strategy or tasks -- is skipped with a warning in favour of an older one,
or the job restarts from scratch; it is renamed ``corrupt-checkpoint-N-*`` so that it is never
picked (or pruned in place of a good one) again, and goes with the job's other leftovers.

Nothing in a checkpoint may run code when it is read: whoever can write the results folder
(shared storage, a downloaded Kaggle output) can also rewrite ``checksums.json``.  Every file
is loaded with ``torch.load(..., weights_only=True)``; the only globals allowed beyond
torch's tensors and plain values are the four numpy names an ``rng.pt`` written before numpy's
state was stored as a tensor needs.  A file that needs anything else is corrupt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import random
import re
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from mtl_contract.files import atomic_write_json, fsync_dir, sha256_file
from runner.ml.model import DROPOUTS
from runner.study.batch_groups import BATCH_ORDERS
from runner.study.compat import LEGACY_BATCH_ORDER, LEGACY_DROPOUT

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
    batch_order: str = LEGACY_BATCH_ORDER  # epoch_plan's order (batching.BATCH_ORDERS); the
    #                                     default is what checkpoints without one used
    dropout: str = LEGACY_DROPOUT       # how dropout masks are drawn (model.DROPOUTS); as above
    # text-matched control (runner.ml.mlm): per source task, the tokens its masked-LM batches
    # selected, and the sum of those batches' losses (empty / 0 for every other job)
    masked_per_task: dict = field(default_factory=dict)
    mlm_loss_sum: float = 0.0

    @property
    def token_count(self) -> int:
        return int(sum(self.tokens_per_task.values()))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TrainingProgress:
        progress = cls(**data)
        if progress.batch_order not in BATCH_ORDERS:   # written by a newer version
            raise ValueError(f"batch_order {progress.batch_order!r} is not one of "
                             f"{', '.join(BATCH_ORDERS)}")
        if progress.dropout not in DROPOUTS:
            raise ValueError(f"dropout {progress.dropout!r} is not one of {', '.join(DROPOUTS)}")
        return progress


def checkpoints_dir(job_dir: Path) -> Path:
    return Path(job_dir) / "checkpoints"


def _rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(),
             # numpy's keys as a tensor: an ndarray would need numpy globals to unpickle
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                       float(cached)),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _checked_rng_state(obj) -> dict:
    """``rng.pt``'s content as :func:`restore_rng` takes it; raises (TypeError, ValueError,
    ...) when it is anything but RNG states.  Each state is tried on a throwaway generator,
    so a bad one is found here, before training starts."""
    if not isinstance(obj, dict) or not {"python", "numpy", "torch"} <= set(obj):
        raise ValueError("not a dict of python / numpy / torch RNG states")
    name, keys, pos, has_gauss, cached = obj["numpy"]
    if isinstance(keys, torch.Tensor):
        keys = keys.numpy()
    if not isinstance(keys, np.ndarray) or keys.dtype.kind not in "iu":
        raise TypeError(f"numpy RNG keys are {type(keys).__name__}, not integers")
    numpy_state = (str(name), keys.astype(np.uint32), int(pos), int(has_gauss), float(cached))
    np.random.RandomState().set_state(numpy_state)
    random.Random().setstate(obj["python"])
    torch.Generator().set_state(obj["torch"])
    cuda = obj.get("cuda", [])
    if not isinstance(cuda, list) or not all(isinstance(t, torch.Tensor) for t in cuda):
        raise TypeError("CUDA RNG states are not a list of tensors")
    return {**obj, "numpy": numpy_state}


def _legacy_numpy_globals():
    """Allow-list exactly what a numpy RNG state (a uint32 ndarray) unpickles through: an
    ``rng.pt`` written before the state was stored as a tensor.  Where torch cannot allow-list
    (before 2.6: no such aliases) such a file is refused as corrupt, like any other file that
    cannot load safely, and the job falls back or restarts."""
    allow = getattr(torch.serialization, "safe_globals", None)
    if allow is None:
        return contextlib.nullcontext()
    core = np._core if hasattr(np, "_core") else np.core
    reconstruct = core.multiarray._reconstruct
    return allow([(reconstruct, "numpy.core.multiarray._reconstruct"),   # numpy 1 wrote this
                  (reconstruct, "numpy._core.multiarray._reconstruct"),  # numpy 2 this
                  np.ndarray, np.dtype, type(np.dtype(np.uint32))])


class _Refused(ValueError):
    """A checkpoint refused on purpose (not merely unreadable); ``str()`` says why."""


class _Unsafe(_Refused):
    """A checkpoint file needs more than tensors and plain values to load."""


class _AnotherJobs(_Refused):
    """The checkpoint's progress names another strategy or other tasks."""


def _load_safely(path: Path, allow=contextlib.nullcontext):
    """``torch.load`` that cannot run code: tensors and plain values only (plus ``allow``).
    Refused files raise _Unsafe naming what they needed (torch's own message advises loading
    them unsafely)."""
    try:
        with allow():
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message: advice, then what was refused ("... GLOBAL posix.system ...")
        found = re.search(r"[^\n]*GLOBAL [^\n]*", str(exc))
        what = found.group(0).replace("WeightsUnpickler error: ", "") if found else str(exc)
        raise _Unsafe(f"{path.name} needs more than tensors and plain values: "
                      f"{what.strip().split('. ')[0][:160]}") from None


def _expect_dict(obj, keys: tuple[str, ...], what: str) -> dict:
    if not isinstance(obj, dict) or not all(isinstance(obj.get(k), dict) for k in keys):
        raise TypeError(f"{what} is not a dict of {', '.join(keys) or 'tensors'}")
    return obj


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # per GPU this process sees: a job saved where two GPUs were visible (one process)
        # resumes in a --workers process that sees one; the job ran on its first GPU
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


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


def _load_checkpoint(path: Path, strategy: str | None, tasks: list[str] | None):
    """(progress, model_state, optim_states, rng) of a verified folder; raises when a file
    does not load safely or the progress is another job's."""
    progress = TrainingProgress.from_json(json.loads((path / "progress.json").read_text()))
    if (strategy is not None and progress.strategy != strategy) or \
            (tasks is not None and list(progress.tasks) != list(tasks)):
        raise _AnotherJobs(f"it belongs to another job ({progress.strategy} {progress.tasks})")
    model_state = _expect_dict(_load_safely(path / "model.pt"), (), "model.pt")
    optim = _expect_dict(_load_safely(path / "optimizer.pt"),
                         ("optimizer", "scheduler", "scaler"), "optimizer.pt")
    try:
        rng = _load_safely(path / "rng.pt")
    except _Unsafe:   # perhaps written before numpy's state was stored as a tensor
        rng = _load_safely(path / "rng.pt", _legacy_numpy_globals)
    return progress, model_state, optim, _checked_rng_state(rng)


def _set_aside(path: Path) -> None:
    """Rename a corrupt checkpoint out of the ``checkpoint-N`` names: never tried again, and
    never kept by the pruning of a save in place of the good checkpoint after it."""
    try:
        os.replace(path, path.with_name(f"corrupt-{path.name}-{uuid.uuid4().hex[:8]}"))
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def load_latest_checkpoint(ckpt_root: Path, logger: logging.Logger | None = None, *,
                           strategy: str | None = None, tasks: list[str] | None = None):
    """The newest intact checkpoint as (path, progress, model_state, optim_states, rng), or None.

    Corrupt checkpoints (see the module docstring; with ``strategy`` / ``tasks`` given, also
    one whose progress names others) are skipped with a warning and set aside; leftover
    temporary folders from a kill during a save are removed."""
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
                return (path, *_load_checkpoint(path, strategy, tasks))
            except _Refused as exc:
                problem = str(exc)
            except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is skipped
                problem = f"unreadable ({exc.__class__.__name__}: {exc})"
        fallback = ("falling back to " + candidates[i + 1][1].name if i + 1 < len(candidates)
                    else "restarting the job from scratch")
        logger.warning("checkpoint %s is corrupt: %s; %s", path, " ".join(problem.split())[:300],
                       fallback)
        _set_aside(path)
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
        try:
            if sha256_file(path / "model.pt") != meta.get("sha256"):
                continue
            return meta, _expect_dict(_load_safely(path / "model.pt"), (), "model.pt")
        except Exception:  # noqa: BLE001, S112 - missing, or not loadable safely: unusable
            continue
    return None
