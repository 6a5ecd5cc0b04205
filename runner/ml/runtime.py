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


def cuda_native_bf16() -> bool:
    """bfloat16 in hardware on this process's GPU (compute capability 8.0+: A100, H100, L4...).
    Not ``torch.cuda.is_bf16_supported()``: since torch 2.3 that also counts emulation and says
    True on a T4, where bfloat16 has no tensor cores and runs several times slower than fp16."""
    return torch.cuda.is_available() and tuple(torch.cuda.get_device_capability()) >= (8, 0)


TRITON_MIN_CAPABILITY = (7, 0)   # torch.compile's GPU code generator (Triton) needs Volta+


def compile_problem(device: torch.device) -> str | None:
    """Why ``torch.compile`` is not used on ``device`` (None: it is).  A CPU runs eagerly by
    design (compiling needs a C++ toolchain and pays off little for these short sequences)."""
    if device.type != "cuda":
        return "not a CUDA device"
    if not hasattr(torch.nn.Module, "compile"):
        return f"torch {torch.__version__} has no Module.compile (2.2+)"
    capability = tuple(torch.cuda.get_device_capability(device))
    if capability < TRITON_MIN_CAPABILITY:
        return (f"{torch.cuda.get_device_name(device)} has compute capability "
                f"{capability[0]}.{capability[1]}; torch.compile's Triton kernels need "
                f"{TRITON_MIN_CAPABILITY[0]}.{TRITON_MIN_CAPABILITY[1]}+")
    from importlib.util import find_spec
    if find_spec("triton") is None:
        return "Triton is not installed (torch.compile's GPU code generator)"
    return None


def compile_module(module: torch.nn.Module, device: torch.device, log) -> bool:
    """``module.compile()`` in place (its state_dict keys stay the plain module's) where
    :func:`compile_problem` allows; otherwise it runs eagerly, with a warning on a GPU.  A graph
    that fails to compile later, at its first call, also falls back to eager execution
    (dynamo's ``suppress_errors``) instead of failing the job.  True when compiled."""
    problem = compile_problem(device)
    if problem is not None:
        if device.type == "cuda":
            log.warning("compile: %s; running eagerly", problem)
        return False
    import torch._dynamo
    torch._dynamo.config.suppress_errors = True
    module.compile()
    return True


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


def synchronize(device) -> None:
    """Wait for ``device``'s queued kernels (CUDA); nothing on the CPU.  For timing."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_report() -> dict:
    """What torch reports of this process's GPUs: count, and the first one's name, compute
    capability, memory and hardware bfloat16 (empty without CUDA)."""
    if not torch.cuda.is_available():
        return {}
    props = torch.cuda.get_device_properties(0)
    return {"count": torch.cuda.device_count(), "name": torch.cuda.get_device_name(0),
            "capability": ".".join(str(x) for x in torch.cuda.get_device_capability(0)),
            "memory_gib": round(props.total_memory / 2 ** 30, 1),
            "native_bf16": cuda_native_bf16(), "cuda": torch.version.cuda}


def matmul_peak_flops(device, dtype: torch.dtype | None, seconds: float = 1.0) -> float:
    """Measured matmul FLOP/s (2 n^3 per product, best of short runs) at ``dtype`` (None:
    float32) on ``device``: the peak a measured MFU is taken against."""
    import time

    device = torch.device(device)
    n = 1024 if device.type == "cpu" else 8192
    dt = dtype or torch.float32
    a = torch.randn(n, n, device=device, dtype=dt)
    b = torch.randn(n, n, device=device, dtype=dt)
    for _ in range(2):
        a @ b
    synchronize(device)
    best, end = 0.0, time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        for _ in range(3):
            a @ b
        synchronize(device)
        best = max(best, 3 * 2 * n ** 3 / (time.perf_counter() - t))
    return best


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
