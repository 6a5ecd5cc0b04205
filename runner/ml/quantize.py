"""RQ3's numeric precision levels: where each can run, a model at a level, and what running it
costs (size on disk, timed inference, peak memory).  runner.recipes.quantized_eval composes
them into ``evaluation/1`` documents.

* ``fp32``  -- the weights as trained (GPU when there is one, else CPU);
* ``fp16`` / ``bf16`` -- every weight cast to the half type (deployment-equivalent, not
  autocast); GPU only (bf16: a GPU that has it);
* ``int8``  -- ``torch.ao.quantization.quantize_dynamic`` of every ``nn.Linear`` (int8 weights,
  activations quantised per batch at run time); CPU only, which is where it runs;
* ``nf4``   -- every ``nn.Linear`` of the encoder replaced by bitsandbytes ``Linear4bit``
  (NF4 weights, blocks of 64, compute in bf16 -- fp16 on a GPU without bf16; the small task
  heads stay fp32); needs bitsandbytes; on a GPU where there is one, else on the CPU when the
  installed bitsandbytes' CPU kernels take the model: one layer of every distinct Linear
  shape of the encoder is quantised and run first (:func:`level_problem`), because those
  kernels depend on the CPU's instruction set and on the shapes.

Whether a level can run here is :func:`level_unavailable` (the machine) and
:func:`level_problem` (the model's shapes), each None or the reason in one line
(:func:`one_line`: the library's message); :func:`environment` is what that was decided
under.  bitsandbytes is imported only when an nf4 level is probed or built (its import is
slow and prints a kernel warning on some CPUs).
"""

from __future__ import annotations

import copy
import functools
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from runner.ml.batching import collate, eval_batches
from runner.ml.runtime import cuda_native_bf16, device_name, empty_cuda_cache

QUANTISED = ("int8", "nf4")   # levels that run a quantisation library's kernels
REASON_CHARS = 400            # a library's message is cut to this many characters
RSS_SAMPLE_S = 0.005          # seconds between CPU RSS samples

T = TypeVar("T")


# ============================================================================================
# Where each level can run
# ============================================================================================

def _cuda_available() -> bool:
    return torch.cuda.is_available()


def _bitsandbytes_version() -> str | None:
    """The installed bitsandbytes' version, read from its metadata: importing it is slow and,
    on some CPUs, prints a kernel warning, so it is imported only by a level that needs it."""
    from importlib import metadata
    try:
        return metadata.version("bitsandbytes")
    except metadata.PackageNotFoundError:
        return None


def _bitsandbytes():
    import bitsandbytes
    return bitsandbytes


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, at most REASON_CHARS characters."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return line[:REASON_CHARS]


def level_unavailable(level: str) -> str | None:
    """None when this machine has what ``level`` needs, else why not (one line).  Whether the
    installed bitsandbytes runs a given model's shapes is :func:`level_problem`'s question."""
    if level in ("fp16", "bf16") and not _cuda_available():
        return f"{level} needs a CUDA GPU; this machine has no CUDA GPU"
    if level == "bf16" and not cuda_native_bf16():
        return "bf16 needs a GPU with bfloat16 support (compute capability 8.0+)"
    if level == "nf4" and _bitsandbytes_version() is None:
        return "nf4 needs bitsandbytes (pip install bitsandbytes), not installed"
    if level == "int8":
        engines = torch.backends.quantized.supported_engines
        if not any(e in engines for e in ("fbgemm", "x86", "qnnpack")):
            return f"int8 dynamic quantisation has no CPU engine here ({engines})"
    return None


def linear_shapes(module) -> tuple[tuple[int, int], ...]:
    """The distinct (in_features, out_features) of ``module``'s ``nn.Linear`` layers."""
    return tuple(sorted({(m.in_features, m.out_features) for m in module.modules()
                         if isinstance(m, nn.Linear)}))


def level_problem(model, level: str) -> str | None:
    """None when ``level`` quantises and runs ``model``'s layers here, else the library's
    reason (one line).  nf4: bitsandbytes' kernels depend on the device, the CPU's
    instruction set and the layer shapes (some CPU kernels cannot take a layer narrower than
    a quantisation block), so every encoder Linear shape is probed, not a stand-in layer."""
    if level != "nf4":
        return None
    return _nf4_problem(linear_shapes(model.encoder), level_device(level))


@functools.lru_cache(maxsize=16)
def _nf4_problem(shapes: tuple[tuple[int, int], ...], device: str) -> str | None:
    where = f"nf4 cannot run on {device} with bitsandbytes {_bitsandbytes_version()}"
    gen = torch.Generator().manual_seed(0)
    try:
        bnb = _bitsandbytes()
    except Exception as exc:  # noqa: BLE001 -- a broken install is "cannot run here"
        return f"{where}: {one_line(exc)}"
    for n_in, n_out in shapes:
        try:
            # in eval mode, as the level runs it: bitsandbytes picks its CPU inference kernel
            # (and repacks the weights for it) only for a layer that is not training
            q = _nf4_linear(bnb, torch.randn(n_out, n_in, generator=gen) * 0.05,
                            torch.zeros(n_out)).eval().to(device)
            with torch.inference_mode():
                # one row takes bitsandbytes' vector kernel, a batch of sequences its matmul
                outs = [q(torch.randn(*rows, n_in, generator=gen).to(device))
                        for rows in ((1, 1), (2, 5))]
            if not all(bool(torch.isfinite(o).all()) for o in outs):
                return f"{where}: Linear {n_in}->{n_out} gave non-finite outputs"
        except Exception as exc:  # noqa: BLE001 -- any library failure means: not here
            return f"{where} (Linear {n_in}->{n_out}): {one_line(exc)}"
    return None


def level_device(level: str) -> str:
    """``"cuda"`` or ``"cpu"``: where ``level`` runs on this machine (int8: always the CPU)."""
    if level == "int8":
        return "cpu"
    return "cuda" if _cuda_available() else "cpu"


def level_torch_device(level: str) -> torch.device:
    """:func:`level_device` as a ``torch.device``."""
    return torch.device(level_device(level))


def environment(level: str) -> dict:
    """What decides whether ``level`` runs here; a level skipped under another environment is
    tried again (the results moved to a GPU, bitsandbytes upgraded)."""
    return {"device": hardware_name(level_device(level)), "torch": torch.__version__,
            "bitsandbytes": _bitsandbytes_version()}


def hardware_name(device: str) -> str:
    """The GPU's name, or the CPU's model and the kernels torch picked for it."""
    if device == "cuda":
        return device_name(device)
    return f"cpu ({_cpu_model()}, torch kernels {torch.backends.cpu.get_cpu_capability()})"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "unknown"


def library_version(level: str) -> str:
    """The library whose kernels run ``level``, with its version (``torch 2.x``)."""
    if level == "nf4":
        return f"bitsandbytes {_bitsandbytes_version()}"
    return f"torch {torch.__version__}"


# ============================================================================================
# One level's model
# ============================================================================================

def to_level(base, level: str):
    """A copy of the fp32 CPU ``base`` at ``level`` (the caller moves it to the device)."""
    model = copy.deepcopy(base)
    if level == "fp32":
        return model
    if level == "fp16":
        return model.half()
    if level == "bf16":
        return model.to(torch.bfloat16)
    if level == "int8":
        import warnings
        with warnings.catch_warnings():
            # torch marks eager-mode quantisation deprecated in favour of torchao (not a
            # dependency); the call works and is what the study specifies
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            from torch.ao.quantization import quantize_dynamic
            return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    if level == "nf4":
        return _to_nf4(model)
    raise ValueError(f"unknown level {level!r}")


def _nf4_compute_dtype():
    if _cuda_available() and not cuda_native_bf16():
        return torch.float16
    return torch.bfloat16   # GPUs that have it, and the CPU backend's usual 4-bit compute type


def _nf4_linear(bnb, weight, bias):
    """A bitsandbytes NF4 ``Linear4bit`` holding ``weight`` (out x in) and ``bias`` (or None);
    it quantises when moved to its device."""
    n_out, n_in = weight.shape
    q = bnb.nn.Linear4bit(n_in, n_out, bias=bias is not None,
                          compute_dtype=_nf4_compute_dtype(), quant_type="nf4")
    q.weight = bnb.nn.Params4bit(weight.clone(), requires_grad=False, quant_type="nf4")
    if bias is not None:
        q.bias = nn.Parameter(bias.clone(), requires_grad=False)
    return q


def _to_nf4(model):
    """Encoder ``nn.Linear`` -> bitsandbytes ``Linear4bit`` (NF4); quantised on ``.to()``."""
    bnb = _bitsandbytes()
    targets = [(name, m) for name, m in model.encoder.named_modules() if isinstance(m, nn.Linear)]
    for name, lin in targets:
        q = _nf4_linear(bnb, lin.weight.data, None if lin.bias is None else lin.bias.data)
        parent_name, _, child = name.rpartition(".")
        parent = model.encoder.get_submodule(parent_name) if parent_name else model.encoder
        setattr(parent, child, q)
    return model


def size_on_disk(model) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the weights one would ship at this level."""
    with tempfile.NamedTemporaryFile(suffix=".pt", delete=False) as fh:
        path = fh.name
    try:
        torch.save(model.state_dict(), path)
        return os.path.getsize(path)
    finally:
        os.unlink(path)


# ============================================================================================
# Inference: logits in split order, timed
# ============================================================================================

def _forward(model, task: str, tensors: dict, device):
    _, logits = model(task, **{k: v.to(device) for k, v in tensors.items() if k != "labels"})
    return logits


def split_logits(model, task: str, split, pad_id: int, device, batch_size: int) -> list:
    """Per-example logits (float32 numpy, in the split's order): (sub-tokens, tags) for NER,
    (outputs,) otherwise.  Batches are sorted by length, as the engine evaluates."""
    out: list = [None] * len(split)
    with torch.inference_mode():
        for indices in eval_batches(split.lengths, batch_size):
            batch = collate(split, indices, pad_id)
            logits = _forward(model, task, batch.tensors, device).float().cpu().numpy()
            for row, i in enumerate(indices):
                i = int(i)
                out[i] = logits[row, : int(split.lengths[i])] if split.kind == "ner" else logits[row]
    return out


def warm_up(model, task: str, split, pad_id: int, device, batch_size: int) -> None:
    """One forward pass of the split's longest batch (the worst case), before a timed run."""
    warm = eval_batches(split.lengths, batch_size)[-1]
    with torch.inference_mode():
        _forward(model, task, collate(split, warm, pad_id).tensors, device)


def timed(run: Callable[[], T], device, measure_rss: bool) -> tuple[T, float, int | None]:
    """(``run()``, its wall seconds by ``time.perf_counter`` with CUDA synchronised before and
    after, the peak RSS in bytes during it when ``measure_rss``, else None)."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    sync()
    peak = _RssPeak() if measure_rss else None
    if peak is not None:
        peak.__enter__()
    try:
        start = time.perf_counter()
        value = run()
        sync()
        seconds = time.perf_counter() - start
    finally:
        if peak is not None:
            peak.__exit__(None, None, None)
    return value, seconds, None if peak is None else peak.peak


# ============================================================================================
# Memory
# ============================================================================================

def rss_bytes() -> int | None:
    """This process's resident set size (``/proc/self/statm``), None where it cannot be read."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class _RssPeak:
    """Peak RSS (bytes) over a ``with`` block, sampled every RSS_SAMPLE_S by a thread."""

    def __init__(self):
        self.peak = rss_bytes() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(RSS_SAMPLE_S):
            self.peak = max(self.peak, rss_bytes() or 0)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes() or 0)


def reset_peak_memory(device) -> None:
    """CUDA: cached blocks released and the peak statistics restarted (the CPU has neither)."""
    if device.type == "cuda":
        empty_cuda_cache()
        torch.cuda.reset_peak_memory_stats()


def release_memory(device) -> None:
    """CUDA: cached blocks back to the driver once a level's model is gone."""
    if device.type == "cuda":
        empty_cuda_cache()


def peak_memory(device, rss_before: int | None, rss_peak: int | None) -> tuple[int, str]:
    """(peak bytes, how they were measured): CUDA ``max_memory_allocated`` since
    :func:`reset_peak_memory`; on the CPU ``rss_peak - rss_before`` when there is a
    ``rss_before``, else the process's peak RSS since it started."""
    if device.type == "cuda":
        return (int(torch.cuda.max_memory_allocated()),
                "cuda max_memory_allocated (weights + activations)")
    if rss_before is not None:
        method = ("cpu peak RSS during the timed run minus RSS before the level's model was "
                  "built (/proc/self/statm, sampled every 5 ms)")
        return max(0, int(rss_peak) - int(rss_before)), method
    import resource
    return (int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024,
            "cpu process peak RSS since start (resource.ru_maxrss; not a delta)")
