"""RQ3: evaluate finished jobs' best weights at several numeric precisions (``evaluate/1`` files).

``python -m runner evaluate MANIFEST`` takes every finished job of the manifest (its
``result.json`` exists), rebuilds the model, loads the best validation weights the job kept in
``checkpoints/best/`` and, for each precision level -- ``fp32``, ``fp16``, ``bf16``, ``int8``,
``nf4``: what each is and where it runs is runner.ml.quantize's docstring -- writes
``<job_dir>/evaluation/<level>.json`` (schema in results/README.md, "RQ3 evaluation").

A level that cannot run here -- no GPU, no bitsandbytes, a probe that fails
(``quantize.level_unavailable``, ``quantize.level_problem``), or a quantised level (int8,
nf4) whose library fails while quantising or running the model -- is written as
``status: "skipped"`` with the reason (one line, the library's message) and the environment
it was decided under; the other levels still run.

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
"rebuild a finished job's model" or "logits out of predict": the first lives here
(:func:`rebuild_model`, :func:`load_job`), the second in runner.ml.quantize (``split_logits``),
both on top of the engine's public functions (``build_model``, ``load_best``,
``encode_split``, ``eval_batches``, ``collate``).  torch is imported (through runner.ml)
only once the arguments are checked.
"""

from __future__ import annotations

import datetime as _dt
import gc
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtl_contract.files import read_json_bounded
from mtl_contract.schema import LEVELS, RESULT_FILE
from runner.errors import InputError
from runner.ml.calibration import calibration_report, flatten_token_logits
from runner.ml.lora import encoder_lora_shape
from runner.outputs.evaluation import (
    evaluation_document,
    evaluation_path,
    skipped_evaluation,
    write_evaluation,
)

DEFAULT_BATCH_SIZE = 32      # examples per inference batch
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
    # a text-matched control's masked-LM head (runner.ml.mlm) trained the encoder; the task
    # model evaluated here has none
    state = {k: v for k, v in state.items() if not k.startswith("mlm_head.")}
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
        result = read_json_bounded(job_dir / RESULT_FILE)
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
    from runner.jobapi import JobFailed
    from runner.recipes.train_job import load_tokenizer

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
# Logits: predictions, calibration inputs, the timed test run
# ============================================================================================

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
    from runner.ml import quantize

    first_task, first = next(iter(loaded.tasks.items()))
    quantize.warm_up(model, first_task, first.test, loaded.pad_id, device, batch_size)
    logits, seconds, rss_peak = quantize.timed(
        lambda: {name: quantize.split_logits(model, name, t.test, loaded.pad_id, device,
                                             batch_size)
                 for name, t in loaded.tasks.items()},
        device, measure_cpu_memory)
    n = sum(len(t.test) for t in loaded.tasks.values())
    return logits, seconds, n, rss_peak


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
    from runner.ml import quantize

    gc.collect()
    rss_before = quantize.rss_bytes()
    quantize.reset_peak_memory(device)
    model = quantize.to_level(loaded.model, level).eval()
    try:
        model.to(device)    # nf4: Linear4bit quantises its weights here
        size = quantize.size_on_disk(model)
        cpu_memory = device.type == "cpu" and rss_before is not None
        test_logits, seconds, n, rss_peak = timed_test_logits(model, loaded, device, batch_size,
                                                              cpu_memory)
        peak_bytes, method = quantize.peak_memory(device, rss_before if cpu_memory else None,
                                                  rss_peak)
        val_logits = {name: quantize.split_logits(model, name, t.validation, loaded.pad_id,
                                                  device, batch_size)
                      for name, t in loaded.tasks.items() if t.spec.kind in CALIBRATION_KIND}
    finally:
        del model
        gc.collect()
        quantize.release_memory(device)
    return LevelRun(size, test_logits, val_logits, seconds, n, peak_bytes, method)


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


def evaluate_level(loaded: LoadedJob, level: str, batch_size: int, metrics_fn: Callable,
                   provenance: dict) -> dict:
    """The ``evaluation/1`` document of ``level`` for a loaded job: status ok, or, when a
    quantised level fails to quantise or run the model here, skipped with the library's
    reason (the other levels still run)."""
    from runner.ml import quantize
    from runner.ml.runtime import device_name

    device = quantize.level_torch_device(level)
    try:
        run = run_level(loaded, level, device, batch_size)
    except Exception as exc:   # a quantisation library's failure, of any type
        if level not in quantize.QUANTISED:
            raise   # fp32/fp16/bf16 run plain torch: a failure there is a bug, shown as one
        why = (f"{level} failed on {device.type} ({quantize.library_version(level)}): "
               f"{quantize.one_line(exc)}")
        return skipped_evaluation(loaded.job_id, level, why, device_name(device.type),
                                  quantize.environment(level))
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
    import runner
    from runner.ml.runtime import torch_version, transformers_version
    from runner.outputs.provenance import git_commit
    return {"runner_version": runner.__version__, "git_commit": git_commit(),
            "torch": torch_version(), "transformers": transformers_version(),
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
        doc = read_json_bounded(path)
    except (OSError, ValueError):
        return False     # unreadable: write it again
    if not isinstance(doc, dict):
        return False
    if doc.get("status") != "skipped":
        return True
    # a skipped level is tried again when this machine has what it needs and the skip was
    # decided under another environment (the results moved to a GPU, bitsandbytes upgraded)
    from runner.ml import quantize
    return (quantize.level_unavailable(level) is not None
            or doc.get("environment") == quantize.environment(level))


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
    # torch only once the arguments are checked
    from runner.ml import quantize
    from runner.ml.runtime import configure_threads
    configure_threads()
    provenance = _provenance()
    for job in jobs:
        job_dir = results_dir / job.job_id
        if not (job_dir / RESULT_FILE).is_file():
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
            why = quantize.level_problem(loaded.model, lv)
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
    plan = build_plan(manifest, data_dir, encoder_shape=encoder_lora_shape)
    return results_dir, [j for j in plan.jobs if experiments is None or j.experiment in experiments]


def _levels_to_run(job_id: str, job_dir: Path, levels: Sequence[str], force: bool,
                   summary: Summary, say: Callable[[str], None]) -> list[str]:
    """The levels of one finished job still to evaluate here: those already written are kept
    (unless ``force``), those this machine cannot run are recorded as skipped."""
    from runner.ml import quantize

    todo = [lv for lv in levels if not _keep_existing(evaluation_path(job_dir, lv), lv, force)]
    summary.kept.extend((job_id, lv) for lv in levels if lv not in todo)
    runnable = []
    for lv in todo:
        why = quantize.level_unavailable(lv)
        if why is None:
            runnable.append(lv)
        else:
            _record(job_dir, _skipped(job_id, lv, why), summary, say)
    return runnable


def _skipped(job_id: str, level: str, why: str) -> dict:
    from runner.ml import quantize
    from runner.ml.runtime import device_name
    return skipped_evaluation(job_id, level, why, device_name(quantize.level_device(level)),
                              quantize.environment(level))


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
