"""The process a job runs in: torch threads, seeds, the device (which, its name, its memory)
and the library versions a result records.  One copy each, for training and evaluation alike;
recipes/ import no torch, so what they need of it is here."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

Device = torch.device                           # the type of a device, for annotations
CudaOutOfMemory = torch.cuda.OutOfMemoryError   # what a CUDA allocation that fails raises


def pick_device() -> torch.device:
    """The GPU when this process sees one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def empty_cuda_cache() -> None:
    """CUDA's cached, unused blocks back to the driver (nothing without CUDA)."""
    torch.cuda.empty_cache()


def cuda_device_count() -> int:
    """GPUs this process sees (``--workers auto|N`` gives each worker one)."""
    return torch.cuda.device_count()


def configure_threads() -> None:
    """Never more torch threads than cores this process may use (containers report the
    host's count, and oversubscribed threads slow a CPU job down)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        available = os.cpu_count() or 1
    torch.set_num_threads(max(1, min(torch.get_num_threads(), available)))


def seed_all(seed: int) -> None:
    """Python's, numpy's and torch's global generators (the order is part of the numerics)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def device_name(device) -> str:
    """``cuda (<GPU name>)`` or ``cpu (<n> threads)``, as result.json records it."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def torch_version() -> str:
    return torch.__version__


def transformers_version() -> str:
    import transformers
    return transformers.__version__


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision on ``device`` at ``dtype``; None: full precision (a no-op context)."""
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)


def to_device(tensors: dict, device: torch.device) -> dict:
    """Host -> device.  CUDA: from pinned (page-locked) memory, asynchronously on the current
    stream (the next kernel on that stream waits for it); CPU: no copy at all."""
    if device.type == "cuda":
        return {k: v.pin_memory().to(device, non_blocking=True) for k, v in tensors.items()}
    return {k: v.to(device) for k, v in tensors.items()}
