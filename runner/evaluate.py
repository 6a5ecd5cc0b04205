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
  installed bitsandbytes has a CPU backend (a tiny layer is quantised and run to find out).

A level that cannot run here is written as ``status: "skipped"`` with the reason.

Per level and task: the primary metric and metrics (``runner.metrics.evaluate``) on the *same*
test subset the job was tested on (the job's ``max_eval_examples``, drawn with the engine's
``SUBSAMPLE_SEED``), calibration before/after temperature scaling fitted on the job's
validation subset (``runner.calibration.calibration_report``; kind per task: classification ->
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
``skipped`` file whose level can run here now.  The engine has no seam for "rebuild a finished
job's model" or "logits out of predict", so both live here on top of the engine's public
functions (``build_model``, ``load_best``, ``encode_split``, ``eval_batches``, ``collate``).
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import gc
import itertools
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

from runner.calibration import (
    LEVELS,
    calibration_report,
    evaluation_document,
    evaluation_path,
    flatten_token_logits,
    skipped_evaluation,
    write_evaluation,
)
from runner.errors import InputError

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

def _cuda_available() -> bool:
    import torch
    return torch.cuda.is_available()


def level_unavailable(level: str) -> str | None:
    """None when ``level`` can run on this machine, else why not (one line)."""
    import torch

    if level in ("fp16", "bf16") and not _cuda_available():
        return f"{level} needs a CUDA GPU; this machine has no CUDA GPU"
    if level == "bf16" and not torch.cuda.is_bf16_supported():
        return "bf16 needs a GPU with bfloat16 support (compute capability 8.0+)"
    if level == "nf4":
        try:
            import bitsandbytes
        except ImportError:
            return "nf4 needs bitsandbytes (pip install bitsandbytes), not installed"
        if not _cuda_available():
            why = _nf4_cpu_problem()
            if why is not None:
                return (f"nf4 needs a CUDA GPU, or a bitsandbytes with a CPU backend (this "
                        f"machine has no CUDA GPU; bitsandbytes {bitsandbytes.__version__} on "
                        f"the CPU: {why})")
    if level == "int8":
        engines = torch.backends.quantized.supported_engines
        if not any(e in engines for e in ("fbgemm", "x86", "qnnpack")):
            return f"int8 dynamic quantisation has no CPU engine here ({engines})"
    return None


@functools.lru_cache(maxsize=1)
def _nf4_cpu_problem() -> str | None:
    """None when bitsandbytes quantises and runs a small NF4 layer on the CPU, else why not."""
    import bitsandbytes as bnb
    import torch

    try:
        lin = torch.nn.Linear(64, 64)
        q = bnb.nn.Linear4bit(64, 64, compute_dtype=torch.bfloat16, quant_type="nf4")
        q.weight = bnb.nn.Params4bit(lin.weight.data.clone(), requires_grad=False,
                                     quant_type="nf4")
        q.bias = torch.nn.Parameter(lin.bias.data.clone(), requires_grad=False)
        q = q.to("cpu")
        with torch.inference_mode():
            out = q(torch.randn(2, 64))
        if not bool(torch.isfinite(out).all()):
            return "its NF4 layer gave non-finite outputs"
    except Exception as exc:  # noqa: BLE001 -- any failure means: no usable CPU backend
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
    return None


def level_device(level: str) -> str:
    if level == "int8":
        return "cpu"
    return "cuda" if _cuda_available() else "cpu"


def device_name(device: str) -> str:
    import torch
    if device == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({torch.get_num_threads()} threads)"


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


def _subsample(df, n: int | None):
    """The engine's subset rule (runner.engine.job): n rows drawn with SUBSAMPLE_SEED."""
    from runner.engine.job import SUBSAMPLE_SEED
    if n is None or len(df) <= int(n):
        return df.reset_index(drop=True)
    return df.sample(n=int(n), random_state=SUBSAMPLE_SEED).sort_index().reset_index(drop=True)


def rebuild_model(job, specs: dict, state: dict):
    """The job's architecture with ``state`` loaded, fp32 on CPU, in eval mode.

    A LoRA job's state (keys with ``lora_``) gets the adapter applied first and is then merged
    into the base weights: what one would deploy, and comparable in size to full fine-tuning."""
    from runner.engine.model import build_model

    model = build_model(job.model_name, specs)
    adapter = (job.config or {}).get("adapter")
    if any("lora_" in k for k in state):
        from runner.adapters import apply_lora, settings_from_table
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
    from runner.engine import checkpoint as ckpt
    from runner.engine.batching import effective_max_length, encode_split

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
    from runner.engine.job import _load_tokenizer as load_tokenizer
    from runner.jobapi import JobFailed

    try:
        tokenizer = load_tokenizer(job.model_name, any(s.kind == "ner" for s in specs.values()))
        model = rebuild_model(job, specs, state)
    except (OSError, RuntimeError, KeyError, JobFailed) as exc:
        return f"cannot rebuild the model ({exc.__class__.__name__}: {str(exc).splitlines()[0][:160]})"
    max_eval = job.config.get("max_eval_examples")
    cap = max_eval if max_test_examples is None else (
        max_test_examples if max_eval is None else min(max_eval, max_test_examples))
    tasks = {}
    for name, spec in specs.items():
        # the job's own subsets first (same rows as its result.json), then the optional cap
        frames = {split: _subsample(_subsample(load_split(data_dir, name, split), max_eval), cap)
                  for split in ("validation", "test")}
        length = effective_max_length(spec.max_length, job.config["max_length"], tokenizer)
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


def _to_nf4(model):
    """Encoder ``nn.Linear`` -> bitsandbytes ``Linear4bit`` (NF4); quantised on ``.cuda()``."""
    import bitsandbytes as bnb
    import torch
    from torch import nn

    if _cuda_available():
        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        compute = torch.bfloat16   # the CPU backend's usual 4-bit compute type
    targets = [(name, m) for name, m in model.encoder.named_modules() if isinstance(m, nn.Linear)]
    for name, lin in targets:
        q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                              compute_dtype=compute, quant_type="nf4")
        q.weight = bnb.nn.Params4bit(lin.weight.data.clone(), requires_grad=False,
                                     quant_type="nf4")
        if lin.bias is not None:
            q.bias = nn.Parameter(lin.bias.data.clone(), requires_grad=False)
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

    from runner.engine.batching import collate, eval_batches

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
    """``runner.metrics.evaluate``'s ``preds`` from logits (the engine's ``predict`` rules)."""
    from runner.engine.batching import word_predictions

    preds = []
    for i, z in enumerate(logits):
        if spec.kind == "ner":
            preds.append(word_predictions(split, i, z.argmax(-1), spec.labels))
        elif spec.kind == "classification":
            preds.append(spec.labels[int(z.argmax())])
        elif spec.kind == "multilabel":
            preds.append([spec.labels[j] for j in np.flatnonzero(z > 0.0)])
        else:
            preds.append(float(z[0]))
    return preds


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

    from runner.engine.batching import collate, eval_batches

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

def evaluate_level(loaded: LoadedJob, level: str, batch_size: int, metrics_fn: Callable,
                   provenance: dict) -> dict:
    """The ``evaluation/1`` document of ``level`` (status ok) for a loaded job."""
    import torch

    device = torch.device(level_device(level))
    gc.collect()
    rss_before = _rss_bytes()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = level_model(loaded.model, level).eval()
    model.to(device)    # nf4: Linear4bit quantises its weights here
    size = size_on_disk(model)
    cpu_memory = device.type == "cpu" and rss_before is not None
    test_logits, seconds, n, rss_peak = timed_test_logits(model, loaded, device, batch_size,
                                                          cpu_memory)
    if device.type == "cuda":
        peak_bytes = int(torch.cuda.max_memory_allocated())
        method = "cuda max_memory_allocated (weights + activations)"
    elif cpu_memory:
        peak_bytes = max(0, int(rss_peak) - int(rss_before))
        method = ("cpu peak RSS during the timed run minus RSS before the level's model was "
                  "built (/proc/self/statm, sampled every 5 ms)")
    else:
        import resource
        peak_bytes = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
        method = "cpu process peak RSS since start (resource.ru_maxrss; not a delta)"

    per_task = {}
    for name, t in loaded.tasks.items():
        spec = t.spec
        preds = predictions_from_logits(spec, t.test, test_logits[name])
        metrics, scored = metrics_fn(spec, t.test_df, preds)
        metrics = {k: (float(v) if v is not None and np.isfinite(v) else None)
                   for k, v in metrics.items()}
        calibration, reason = None, None
        kind = CALIBRATION_KIND.get(spec.kind)
        if kind is None:
            reason = f"{spec.kind} task: no class probabilities to calibrate"
        else:
            val_logits = split_logits(model, name, t.validation, loaded.pad_id, device,
                                      batch_size)
            try:
                vz, vy = calibration_inputs(spec, t.validation, val_logits)
                tz, ty = calibration_inputs(spec, t.test, test_logits[name])
                calibration = calibration_report(vz, vy, tz, ty, kind=kind)
            except ValueError as exc:   # e.g. no scored word, non-finite logits at fp16
                reason = f"calibration not computed: {exc}"
        per_task[name] = {"primary_metric": spec.primary_metric, "metrics": metrics,
                          # scored units, as result.json counts them (HoC: abstracts)
                          "n_test": len(scored), "calibration": calibration,
                          "calibration_reason": reason}
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return evaluation_document(
        loaded.job_id, level, device=device_name(device.type), batch_size=batch_size,
        latency_ms_per_example=1000.0 * seconds / n, throughput_examples_per_s=n / seconds,
        peak_memory_bytes=peak_bytes, size_on_disk_bytes=size, per_task=per_task,
        provenance={**provenance, "peak_memory_method": method,
                    "best_weights": {"step": loaded.best_meta.get("step"),
                                     "sha256": loaded.best_meta.get("sha256")},
                    "max_eval_examples": loaded.result.get("config", {}).get("max_eval_examples"),
                    "n_test_examples": n, "timed_seconds": seconds,
                    "evaluated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(
                        timespec="seconds")})


def _provenance() -> dict:
    import torch
    import transformers

    import runner
    return {"runner_version": runner.__version__, "git_commit": _git_commit(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(),
            "timing": "time.perf_counter over every test example after one warm-up batch"}


def _git_commit() -> str | None:
    import subprocess
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _configure_threads() -> None:
    import torch
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count() or 1
    torch.set_num_threads(max(1, min(torch.get_num_threads(), available)))


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
        status = json.loads(path.read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError):
        return False     # unreadable: write it again
    # a skipped level is retried when it can run here now (e.g. the results moved to a GPU)
    return status != "skipped" or level_unavailable(level) is not None


def evaluate_manifest(manifest_path, *, results_dir=None, data_dir="data",
                      levels: Sequence[str] = LEVELS, batch_size: int = DEFAULT_BATCH_SIZE,
                      experiments: Sequence[str] | None = None,
                      max_test_examples: int | None = None, force: bool = False,
                      say: Callable[[str], None] = print, get_task: Callable | None = None,
                      load_split: Callable | None = None,
                      metrics_fn: Callable | None = None) -> Summary:
    """Evaluate every finished job of the manifest at ``levels`` (module docstring)."""
    from runner.manifest import load_manifest
    from runner.plan import build_plan

    if get_task is None:
        from runner.tasks import get_task
    if load_split is None:
        from runner.data import load_split
    if metrics_fn is None:
        from runner.metrics import evaluate as metrics_fn
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
    jobs = [j for j in plan.jobs if experiments is None or j.experiment in experiments]
    summary = Summary()
    _configure_threads()
    provenance = _provenance()
    for job in jobs:
        job_dir = results_dir / job.job_id
        if not (job_dir / "result.json").is_file():
            summary.unfinished += 1
            continue
        todo = [lv for lv in levels if not _keep_existing(evaluation_path(job_dir, lv), lv, force)]
        summary.kept.extend((job.job_id, lv) for lv in levels if lv not in todo)
        if not todo:
            continue
        runnable = [lv for lv in todo if level_unavailable(lv) is None]
        for lv in todo:
            why = level_unavailable(lv)
            if why is not None:
                write_evaluation(job_dir, skipped_evaluation(job.job_id, lv, why,
                                                             device_name(level_device(lv))))
                summary.written.append((job.job_id, lv, "skipped"))
                say(f"{job.job_id} {lv}: skipped ({why})")
        if not runnable:
            continue
        loaded = load_job(job, job_dir, Path(data_dir), max_test_examples, get_task, load_split)
        if isinstance(loaded, str):
            summary.skipped_jobs.append((job.job_id, loaded))
            say(f"{job.job_id}: skipped ({loaded})")
            continue
        for lv in runnable:
            doc = evaluate_level(loaded, lv, batch_size, metrics_fn, provenance)
            write_evaluation(job_dir, doc)
            summary.written.append((job.job_id, lv, "ok"))
            scores = ", ".join(
                f"{t} {e['primary_metric']} {_fmt(e['metrics'][e['primary_metric']])}"
                f" ECE {_fmt((e['calibration'] or {}).get('ece_before'))}"
                f"->{_fmt((e['calibration'] or {}).get('ece_after'))}"
                for t, e in doc["per_task"].items())
            say(f"{job.job_id} {lv}: {scores}; {doc['latency_ms_per_example']:.2f} ms/example, "
                f"{doc['size_on_disk_bytes'] / 1e6:.1f} MB on disk, "
                f"peak {doc['peak_memory_bytes'] / 1e6:.1f} MB")
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


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


# ============================================================================================
# RQ4: the task similarity file of a manifest's study
# ============================================================================================

def manifest_tasks(manifest) -> tuple[str, ...]:
    """Every task the manifest's experiments train on, in the study's task order."""
    from runner.manifest import known_tasks

    order = known_tasks()
    found = {t for e in manifest.experiments for s in e.task_sets for t in s}
    return tuple(sorted(found, key=lambda t: order.index(t) if t in order else len(order)))


def has_pair_experiment(manifest) -> bool:
    """A multi_task experiment written as ``task_sets = "pairs"``: its sets are exactly every
    unordered pair of 3 or more tasks (the parser expands "pairs" into those)."""
    for e in manifest.experiments:
        if e.strategy != "multi_task" or not e.task_sets:
            continue
        tasks = {t for s in e.task_sets for t in s}
        if len(tasks) >= 3 and all(len(s) == 2 for s in e.task_sets) and \
                {frozenset(s) for s in e.task_sets} == \
                {frozenset(p) for p in itertools.combinations(tasks, 2)}:
            return True
    return False


def similarity_argv(manifest, results_dir, data_dir, out=None) -> tuple[list[str], str | None]:
    """``runner.similarity.main`` arguments for the manifest's tasks, and a note (or None).

    The word-piece measure uses the manifest's model tokenizer when the manifest has one model
    and it is a local folder with a ``tokenizer.json`` (minilm); otherwise word-level only."""
    from runner.models_registry import resolve_model

    tasks = manifest_tasks(manifest)
    out = Path(out) if out is not None else Path(results_dir) / "task_similarity.json"
    argv = ["--tasks", *tasks, "--data-dir", str(data_dir), "--out", str(out)]
    models = sorted({m for e in manifest.experiments for m in e.models})
    note = None
    paths = [resolve_model(m, manifest.models) for m in models]
    if len(paths) == 1 and (Path(paths[0]) / "tokenizer.json").is_file():
        argv += ["--tokenizer", paths[0]]
    elif len(paths) != 1:
        note = (f"{len(paths)} models ({', '.join(models)}): word-level measures only "
                f"(run with --tokenizer MODEL_DIR for one model's word pieces)")
    else:
        note = (f"{models[0]} is not a local model folder ({paths[0]}): word-level measures "
                f"only (run with --tokenizer MODEL_DIR for word pieces)")
    return argv, note
