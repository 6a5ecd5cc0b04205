"""RQ3: evaluate finished jobs' best weights at several numeric precisions (``evaluate/1`` files).

``python -m runner evaluate MANIFEST`` takes every finished job of the manifest (its
``result.json`` exists), rebuilds the model, loads the best validation weights the job kept in
``checkpoints/best/`` and, for each precision level, writes ``<job_dir>/evaluation/<level>.json``
(schema in results/README.md, "RQ3 evaluation"):

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

A level that cannot run here -- no GPU, no bitsandbytes, a probe that fails, or a quantised
level (int8, nf4) whose library fails while quantising or running the model -- is written as
``status: "skipped"`` with the reason (one line, the library's message) and the environment
it was decided under; the other levels still run.  bitsandbytes is imported only when an nf4
level is evaluated (its import is slow and prints a kernel warning on some CPUs).

Per level and task: the primary metric and metrics (``runner.ml.metrics.evaluate``) on the *same*
test subset the job was tested on (the job's ``max_eval_examples``, drawn with the engine's
``SUBSAMPLE_SEED``), calibration before/after temperature scaling fitted on the job's
validation subset (``runner.ml.calibration.calibration_report``; kind per task: classification ->
multiclass, multilabel (HoC) -> multilabel, NER -> token over each word's first sub-token,
regression (BIOSSES) -> none, with the reason).  Per level (all of the job's tasks together):

* latency (ms per example) and throughput (examples/s): one warm-up batch, then every test
  example of every task at ``--batch-size``, length-sorted batches as the engine evaluates,
  wall time by ``time.perf_counter`` (CUDA synchronised) including padding/collation;
* peak memory (bytes): CUDA ``max_memory_allocated`` from before the level's weights were
  moved to the GPU to the end of the timed run (weights + activations); on CPU the peak
  resident set size during the timed run minus the RSS before the level's model was built
  (``/proc/self/statm`` sampled every 5 ms; a process-level measure, noisy to a few MB);
  ``provenance.peak_memory_method`` says which;
* size on disk (bytes): the level's ``state_dict`` saved with ``torch.save`` to a temporary
  file.

Resumable: a level whose file exists is left alone (``--force`` recomputes), except a
``skipped`` file whose level this machine has what it needs for and that was decided under
another environment (device, torch, bitsandbytes versions).  The engine has no seam for
"rebuild a finished job's model" or "logits out of predict", so both live here on top of the
engine's public functions (``build_model``, ``load_best``, ``encode_split``, ``eval_batches``,
``collate``).
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import gc
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.errors import InputError
from runner.ml.calibration import calibration_report, flatten_token_logits
from runner.outputs.evaluation import (
    LEVELS,
    evaluation_document,
    evaluation_path,
    skipped_evaluation,
    write_evaluation,
)

DEFAULT_BATCH_SIZE = 32      # examples per inference batch
RSS_SAMPLE_S = 0.005         # seconds between CPU RSS samples
CALIBRATION_KIND = {"classification": "multiclass", "multilabel": "multilabel", "ner": "token"}


# ============================================================================================
# Arguments
# ============================================================================================

def parse_levels(text: str) -> tuple[str, ...]:
    """``"fp32,int8"`` -> ("fp32", "int8"); unknown or repeated levels are InputErrors."""
    levels = tuple(p.strip() for p in str(text).split(",") if p.strip())
    if not levels:
        raise InputError(None, f"expected a comma-separated list of {', '.join(LEVELS)}",
                         where="--levels")
    for lv in levels:
        if lv not in LEVELS:
            raise InputError(None, f"unknown level {lv!r}; expected some of {', '.join(LEVELS)}",
                             where="--levels")
    if len(set(levels)) != len(levels):
        raise InputError(None, "a level is listed twice", where="--levels")
    return levels


def parse_names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    return names or None


# ============================================================================================
# Where each level can run
# ============================================================================================

QUANTISED = ("int8", "nf4")   # levels that run a quantisation library's kernels
REASON_CHARS = 400            # a library's message is cut to this many characters


def _cuda_available() -> bool:
    import torch
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
    import torch

    if level in ("fp16", "bf16") and not _cuda_available():
        return f"{level} needs a CUDA GPU; this machine has no CUDA GPU"
    if level == "bf16" and not torch.cuda.is_bf16_supported():
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
    from torch import nn
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
    import torch

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


def environment(level: str) -> dict:
    """What decides whether ``level`` runs here; a level skipped under another environment is
    tried again (the results moved to a GPU, bitsandbytes upgraded)."""
    import torch
    return {"device": hardware_name(level_device(level)), "torch": torch.__version__,
            "bitsandbytes": _bitsandbytes_version()}


def hardware_name(device: str) -> str:
    import torch

    from runner.ml.runtime import device_name
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


def level_device(level: str) -> str:
    if level == "int8":
        return "cpu"
    return "cuda" if _cuda_available() else "cpu"


# ============================================================================================
# The finished job's model and data
# ============================================================================================

@dataclass
class TaskData:
    spec: object
    test_df: object          # pandas.DataFrame the metrics score (the job's test subset)
    test: object             # EncodedSplit of test_df
    validation: object       # EncodedSplit of the job's validation subset (temperature fit)


@dataclass
class LoadedJob:
    job_id: str
    job_dir: Path
    result: dict
    model: object            # MultiTaskModel, fp32, CPU, best weights loaded, eval mode
    best_meta: dict
    tasks: dict[str, TaskData]
    pad_id: int


def rebuild_model(job, specs: dict, state: dict):
    """The job's architecture with ``state`` loaded, fp32 on CPU, in eval mode.

    A LoRA job's state (keys with ``lora_``) gets the adapter applied first and is then merged
    into the base weights: what one would deploy, and comparable in size to full fine-tuning."""
    from runner.ml.model import build_model

    model = build_model(job.model_name, specs)
    adapter = job.settings.adapter
    if any("lora_" in k for k in state):
        from runner.ml.lora import apply_lora
        from runner.study.adapter import settings_from_table
        table = {k: v for k, v in (adapter or {}).items() if k != "matched_to"}
        model.encoder = apply_lora(model.encoder, settings_from_table(table))
        model.load_state_dict(state)
        model.encoder = model.encoder.merge_and_unload()
    else:
        model.load_state_dict(state)
    model.float().eval()
    return model


def load_job(job, job_dir: Path, data_dir: Path, max_test_examples: int | None,
             get_task: Callable, load_split: Callable) -> LoadedJob | str:
    """A finished job ready to evaluate, or why it cannot be (one line)."""
    from runner.data.splits import subsample
    from runner.ml import checkpoint as ckpt
    from runner.ml.batching import effective_max_length, encode_split, model_length_limit

    try:
        result = json.loads((job_dir / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"result.json unreadable ({exc.__class__.__name__})"
    best = ckpt.load_best(ckpt.checkpoints_dir(job_dir))
    if best is None:
        if result.get("config", {}).get("keep_weights") is False:
            return "no best weights kept (the manifest says keep_weights = false)"
        return "no best weights kept (checkpoints/best/ missing or failing its checksum)"
    best_meta, state = best
    specs = {name: get_task(name) for name in job.tasks}
    # the engine's own loader (imported here: it imports torch), so evaluation
    # tokenizes exactly as training did
    from runner.orchestrate.jobapi import JobFailed
    from runner.recipes.train_job import _load_tokenizer as load_tokenizer

    try:
        tokenizer = load_tokenizer(job.model_name, any(s.kind == "ner" for s in specs.values()))
        model = rebuild_model(job, specs, state)
    except (OSError, RuntimeError, KeyError, JobFailed) as exc:
        return f"cannot rebuild the model ({exc.__class__.__name__}: {str(exc).splitlines()[0][:160]})"
    max_eval = job.settings.max_eval_examples
    cap = max_eval if max_test_examples is None else (
        max_test_examples if max_eval is None else min(max_eval, max_test_examples))
    tasks = {}
    for name, spec in specs.items():
        # the job's own subsets first (same rows as its result.json), then the optional cap
        frames = {split: subsample(subsample(load_split(data_dir, name, split), max_eval), cap)
                  for split in ("validation", "test")}
        length = effective_max_length(name, job.settings, model_length_limit(
            tokenizer, getattr(model.encoder, "config", None)))
        tasks[name] = TaskData(spec, frames["test"],
                               encode_split(spec, frames["test"], tokenizer, length),
                               encode_split(spec, frames["validation"], tokenizer, length))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return LoadedJob(job.job_id, job_dir, result, model, best_meta, tasks, pad_id)


# ============================================================================================
# One level's model
# ============================================================================================

def level_model(base, level: str):
    """A copy of the fp32 CPU ``base`` at ``level`` (the caller moves it to the device)."""
    import torch
    from torch import nn

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
    import torch
    if _cuda_available() and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16   # GPUs that have it, and the CPU backend's usual 4-bit compute type


def _nf4_linear(bnb, weight, bias):
    """A bitsandbytes NF4 ``Linear4bit`` holding ``weight`` (out x in) and ``bias`` (or None);
    it quantises when moved to its device."""
    from torch import nn

    n_out, n_in = weight.shape
    q = bnb.nn.Linear4bit(n_in, n_out, bias=bias is not None,
                          compute_dtype=_nf4_compute_dtype(), quant_type="nf4")
    q.weight = bnb.nn.Params4bit(weight.clone(), requires_grad=False, quant_type="nf4")
    if bias is not None:
        q.bias = nn.Parameter(bias.clone(), requires_grad=False)
    return q


def _to_nf4(model):
    """Encoder ``nn.Linear`` -> bitsandbytes ``Linear4bit`` (NF4); quantised on ``.to()``."""
    from torch import nn

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
    import torch

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

def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class _RssPeak:
    """Peak RSS (bytes) over a ``with`` block, sampled every RSS_SAMPLE_S by a thread."""

    def __init__(self):
        self.peak = _rss_bytes() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(RSS_SAMPLE_S):
            self.peak = max(self.peak, _rss_bytes() or 0)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes() or 0)


def _forward(model, task: str, tensors: dict, device):
    _, logits = model(task, **{k: v.to(device) for k, v in tensors.items() if k != "labels"})
    return logits


def split_logits(model, task: str, split, pad_id: int, device, batch_size: int) -> list:
    """Per-example logits (float32 numpy, in the split's order): (sub-tokens, tags) for NER,
    (outputs,) otherwise.  Batches are sorted by length, as the engine evaluates."""
    import torch

    from runner.ml.batching import collate, eval_batches

    out: list = [None] * len(split)
    with torch.inference_mode():
        for indices in eval_batches(split.lengths, batch_size):
            batch = collate(split, indices, pad_id)
            logits = _forward(model, task, batch.tensors, device).float().cpu().numpy()
            for row, i in enumerate(indices):
                i = int(i)
                out[i] = logits[row, : int(split.lengths[i])] if split.kind == "ner" else logits[row]
    return out


def predictions_from_logits(spec, split, logits: list) -> list:
    """``runner.ml.metrics.evaluate``'s ``preds`` from logits (the engine's rule)."""
    from runner.ml.inference import prediction

    return [prediction(spec, split, i, z) for i, z in enumerate(logits)]


def calibration_inputs(spec, split, logits: list) -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) for calibration_report: NER keeps each word's first sub-token."""
    if spec.kind == "ner":
        zs, ys = [], []
        for i, z in enumerate(logits):
            first = split.word_first[i]
            pos = first[first >= 0]
            zs.append(z[pos])
            ys.append(split.labels[i][pos])
        return flatten_token_logits(zs, ys)
    if spec.kind == "multilabel":
        return np.stack(logits), np.stack(split.labels)
    return np.stack(logits), np.asarray(split.labels)


def timed_test_logits(model, loaded: LoadedJob, device, batch_size: int,
                      measure_cpu_memory: bool) -> tuple[dict, float, int, int | None]:
    """Test logits per task, wall seconds over every test example after one warm-up batch, the
    example count, and the peak RSS (CPU) during the timed run."""
    import torch

    from runner.ml.batching import collate, eval_batches

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    first_task, first = next(iter(loaded.tasks.items()))
    warm = eval_batches(first.test.lengths, batch_size)[-1]   # the longest batch: worst case
    with torch.inference_mode():
        _forward(model, first_task, collate(first.test, warm, loaded.pad_id).tensors, device)
    sync()
    peak = _RssPeak() if measure_cpu_memory else None
    if peak is not None:
        peak.__enter__()
    try:
        start = time.perf_counter()
        logits = {name: split_logits(model, name, t.test, loaded.pad_id, device, batch_size)
                  for name, t in loaded.tasks.items()}
        sync()
        seconds = time.perf_counter() - start
    finally:
        if peak is not None:
            peak.__exit__(None, None, None)
    n = sum(len(t.test) for t in loaded.tasks.values())
    return logits, seconds, n, None if peak is None else peak.peak


# ============================================================================================
# One level of one job
# ============================================================================================

@dataclass
class LevelRun:
    """What one level's model produced on the job's data, and what it cost."""
    size: int                 # bytes of its saved state dict
    test_logits: dict         # task -> per-example logits (split order)
    val_logits: dict          # the same on validation, for the tasks that are calibrated
    seconds: float            # the timed run over every test example
    n: int                    # test examples timed
    peak_bytes: int
    method: str               # how peak_bytes was measured


def run_level(loaded: LoadedJob, level: str, device, batch_size: int) -> LevelRun:
    """Build ``level``'s model, time it over the test sets, take the validation logits."""
    import torch

    gc.collect()
    rss_before = _rss_bytes()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = level_model(loaded.model, level).eval()
    try:
        model.to(device)    # nf4: Linear4bit quantises its weights here
        size = size_on_disk(model)
        cpu_memory = device.type == "cpu" and rss_before is not None
        test_logits, seconds, n, rss_peak = timed_test_logits(model, loaded, device, batch_size,
                                                              cpu_memory)
        peak_bytes, method = _peak_memory(device, rss_before if cpu_memory else None, rss_peak)
        val_logits = {name: split_logits(model, name, t.validation, loaded.pad_id, device,
                                         batch_size)
                      for name, t in loaded.tasks.items() if t.spec.kind in CALIBRATION_KIND}
    finally:
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return LevelRun(size, test_logits, val_logits, seconds, n, peak_bytes, method)


def _peak_memory(device, rss_before: int | None, rss_peak: int | None) -> tuple[int, str]:
    import torch

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


def score_task(name: str, t: TaskData, run: LevelRun, metrics_fn: Callable) -> dict:
    """One task's ``per_task`` entry: test metrics and calibration from the level's logits."""
    spec = t.spec
    preds = predictions_from_logits(spec, t.test, run.test_logits[name])
    metrics, scored = metrics_fn(spec, t.test_df, preds)
    metrics = {k: (float(v) if v is not None and np.isfinite(v) else None)
               for k, v in metrics.items()}
    calibration, reason = None, None
    kind = CALIBRATION_KIND.get(spec.kind)
    if kind is None:
        reason = f"{spec.kind} task: no class probabilities to calibrate"
    else:
        try:
            vz, vy = calibration_inputs(spec, t.validation, run.val_logits[name])
            tz, ty = calibration_inputs(spec, t.test, run.test_logits[name])
            calibration = calibration_report(vz, vy, tz, ty, kind=kind)
        except ValueError as exc:   # e.g. no scored word, non-finite logits at fp16
            reason = f"calibration not computed: {exc}"
    # n_test: scored units, as result.json counts them (HoC: abstracts)
    return {"primary_metric": spec.primary_metric, "metrics": metrics, "n_test": len(scored),
            "calibration": calibration, "calibration_reason": reason}


def _library(level: str) -> str:
    import torch
    if level == "nf4":
        return f"bitsandbytes {_bitsandbytes_version()}"
    return f"torch {torch.__version__}"


def evaluate_level(loaded: LoadedJob, level: str, batch_size: int, metrics_fn: Callable,
                   provenance: dict) -> dict:
    """The ``evaluation/1`` document of ``level`` for a loaded job: status ok, or, when a
    quantised level fails to quantise or run the model here, skipped with the library's
    reason (the other levels still run)."""
    import torch

    from runner.ml.runtime import device_name

    device = torch.device(level_device(level))
    try:
        run = run_level(loaded, level, device, batch_size)
    except Exception as exc:   # a quantisation library's failure, of any type
        if level not in QUANTISED:
            raise   # fp32/fp16/bf16 run plain torch: a failure there is a bug, shown as one
        why = f"{level} failed on {device.type} ({_library(level)}): {one_line(exc)}"
        return skipped_evaluation(loaded.job_id, level, why, device_name(device.type),
                                  environment(level))
    per_task = {name: score_task(name, t, run, metrics_fn) for name, t in loaded.tasks.items()}
    return evaluation_document(
        loaded.job_id, level, device=device_name(device.type), batch_size=batch_size,
        latency_ms_per_example=1000.0 * run.seconds / run.n,
        throughput_examples_per_s=run.n / run.seconds, peak_memory_bytes=run.peak_bytes,
        size_on_disk_bytes=run.size, per_task=per_task,
        provenance={**provenance, "peak_memory_method": run.method,
                    "best_weights": {"step": loaded.best_meta.get("step"),
                                     "sha256": loaded.best_meta.get("sha256")},
                    "max_eval_examples": loaded.result.get("config", {}).get("max_eval_examples"),
                    "n_test_examples": run.n, "timed_seconds": run.seconds,
                    "evaluated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(
                        timespec="seconds")})


def _provenance() -> dict:
    import torch
    import transformers

    import runner
    from runner.outputs.provenance import git_commit
    return {"runner_version": runner.__version__, "git_commit": git_commit(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(),
            "timing": "time.perf_counter over every test example after one warm-up batch"}


# ============================================================================================
# The command
# ============================================================================================

@dataclass
class Summary:
    written: list = None      # (job_id, level, status)
    kept: list = None         # (job_id, level): file existed
    skipped_jobs: list = None  # (job_id, reason)
    unfinished: int = 0

    def __post_init__(self):
        self.written, self.kept, self.skipped_jobs = [], [], []


def _keep_existing(path: Path, level: str, force: bool) -> bool:
    if force or not path.is_file():
        return False
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False     # unreadable: write it again
    if not isinstance(doc, dict):
        return False
    if doc.get("status") != "skipped":
        return True
    # a skipped level is tried again when this machine has what it needs and the skip was
    # decided under another environment (the results moved to a GPU, bitsandbytes upgraded)
    return level_unavailable(level) is not None or doc.get("environment") == environment(level)


def evaluate_manifest(manifest_path, *, results_dir=None, data_dir="data",
                      levels: Sequence[str] = LEVELS, batch_size: int = DEFAULT_BATCH_SIZE,
                      experiments: Sequence[str] | None = None,
                      max_test_examples: int | None = None, force: bool = False,
                      say: Callable[[str], None] = print, get_task: Callable | None = None,
                      load_split: Callable | None = None,
                      metrics_fn: Callable | None = None) -> Summary:
    """Evaluate every finished job of the manifest at ``levels`` (module docstring)."""
    if get_task is None:
        from runner.data.tasks import get_task
    if load_split is None:
        from runner.data.splits import load_split
    if metrics_fn is None:
        from runner.ml.metrics import evaluate as metrics_fn
    results_dir, jobs = _jobs_to_evaluate(manifest_path, results_dir, data_dir, batch_size,
                                          experiments, max_test_examples)
    summary = Summary()
    from runner.ml.runtime import configure_threads  # torch only once a level runs
    configure_threads()
    provenance = _provenance()
    for job in jobs:
        job_dir = results_dir / job.job_id
        if not (job_dir / "result.json").is_file():
            summary.unfinished += 1
            continue
        runnable = _levels_to_run(job.job_id, job_dir, levels, force, summary, say)
        if not runnable:
            continue
        loaded = load_job(job, job_dir, Path(data_dir), max_test_examples, get_task, load_split)
        if isinstance(loaded, str):
            summary.skipped_jobs.append((job.job_id, loaded))
            say(f"{job.job_id}: skipped ({loaded})")
            continue
        for lv in runnable:
            why = level_problem(loaded.model, lv)
            doc = (evaluate_level(loaded, lv, batch_size, metrics_fn, provenance) if why is None
                   else _skipped(job.job_id, lv, why))
            _record(job_dir, doc, summary, say)
        del loaded
        gc.collect()
    if jobs and summary.unfinished == len(jobs):
        say(f"no finished job of this manifest under {results_dir} (job ids include the data "
            f"checksums: is --data-dir the one the study ran with?)")
    say(f"evaluated: {sum(1 for w in summary.written if w[2] == 'ok')} level(s) ok, "
        f"{sum(1 for w in summary.written if w[2] == 'skipped')} skipped here, "
        f"{len(summary.kept)} already done, {len(summary.skipped_jobs)} job(s) without "
        f"usable weights, {summary.unfinished} job(s) not finished")
    return summary


def _jobs_to_evaluate(manifest_path, results_dir, data_dir, batch_size: int,
                      experiments: Sequence[str] | None, max_test_examples: int | None):
    """(results folder, the plan's jobs of ``experiments``), every argument checked first:
    bad input is one InputError before any model is loaded."""
    from runner.study.manifest import load_manifest
    from runner.study.plan import build_plan

    if batch_size < 1:
        raise InputError(None, f"expected an integer >= 1, got {batch_size}", where="--batch-size")
    if max_test_examples is not None and max_test_examples < 1:
        raise InputError(None, f"expected an integer >= 1, got {max_test_examples}",
                         where="--max-test-examples")
    manifest = load_manifest(manifest_path)
    results_dir = Path(results_dir or manifest.study.results)
    if not results_dir.is_dir():
        raise InputError(str(results_dir), "no results folder (run the manifest first)",
                         where="--results-dir")
    names = [e.name for e in manifest.experiments]
    for name in experiments or ():
        if name not in names:
            raise InputError(str(manifest_path), f"no experiment named {name!r}; expected "
                             f"some of {', '.join(names)}", where="--experiments")
    plan = build_plan(manifest, data_dir)
    return results_dir, [j for j in plan.jobs if experiments is None or j.experiment in experiments]


def _levels_to_run(job_id: str, job_dir: Path, levels: Sequence[str], force: bool,
                   summary: Summary, say: Callable[[str], None]) -> list[str]:
    """The levels of one finished job still to evaluate here: those already written are kept
    (unless ``force``), those this machine cannot run are recorded as skipped."""
    todo = [lv for lv in levels if not _keep_existing(evaluation_path(job_dir, lv), lv, force)]
    summary.kept.extend((job_id, lv) for lv in levels if lv not in todo)
    runnable = []
    for lv in todo:
        why = level_unavailable(lv)
        if why is None:
            runnable.append(lv)
        else:
            _record(job_dir, _skipped(job_id, lv, why), summary, say)
    return runnable


def _skipped(job_id: str, level: str, why: str) -> dict:
    from runner.ml.runtime import device_name
    return skipped_evaluation(job_id, level, why, device_name(level_device(level)),
                              environment(level))


def _record(job_dir: Path, doc: dict, summary: Summary, say: Callable[[str], None]) -> None:
    """Write one level's file, count it and say one line about it."""
    write_evaluation(job_dir, doc)
    job_id, level, status = doc["job_id"], doc["level"], doc["status"]
    summary.written.append((job_id, level, status))
    if status == "skipped":
        say(f"{job_id} {level}: skipped ({doc['reason']})")
        return
    scores = ", ".join(
        f"{t} {e['primary_metric']} {_fmt(e['metrics'][e['primary_metric']])}"
        f" ECE {_fmt((e['calibration'] or {}).get('ece_before'))}"
        f"->{_fmt((e['calibration'] or {}).get('ece_after'))}"
        for t, e in doc["per_task"].items())
    say(f"{job_id} {level}: {scores}; {doc['latency_ms_per_example']:.2f} ms/example, "
        f"{doc['size_on_disk_bytes'] / 1e6:.1f} MB on disk, "
        f"peak {doc['peak_memory_bytes'] / 1e6:.1f} MB")


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


# ============================================================================================
# RQ4: the task similarity file of a manifest's study
# ============================================================================================
