"""``run_job(job, ctx)``: what one planned job computes, from prepared data to result dict.

resolve the job -> load and tokenise its data -> train (resuming from the newest intact
checkpoint) -> test the best weights -> ``predictions/<task>.parquet`` -> held-out evaluation
(RQ2, ``config.heldout``: runner.engine.heldout) -> return the result dict of results/README.md
(the executor writes it as ``result.json``, last).

``config.adapter`` (RQ2): the encoder is wrapped with LoRA before training, so only the adapter
and the task heads train (multi-task jobs: one adapter shared by every task head).
"""

from __future__ import annotations

import datetime as _dt
import gc
import hashlib
import io
import math
import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch

import runner
from runner.engine import checkpoint as ckpt
from runner.engine.batching import effective_max_length, encode_split
from runner.engine.heldout import run_heldout
from runner.engine.model import apply_adapter, build_model, parameter_counts
from runner.engine.train import (
    TrainSetup,
    TrainTask,
    autocast_dtype,
    eval_batch_size,
    predict,
    train,
)
from runner.fsutil import atomic_write_bytes, canonical_json
from runner.jobapi import JobFailed

STRATEGY_EXPERIMENT_TYPE = {"single_task": "single_task_baseline", "multi_task": "multi_task",
                            "token_controlled": "token_controlled_baseline"}
SUBSAMPLE_SEED = 0  # the same subset for every job and seed, so predictions pair across jobs


# Seams to the data side (issue 3), looked up at call time so tests can substitute them.
def get_task(name: str):
    from runner.tasks import get_task as _get_task
    return _get_task(name)


def load_split(data_dir, task: str, split: str):
    from runner.data import load_split as _load_split
    return _load_split(data_dir, task, split)


def evaluate(spec, split_df, preds):
    from runner.metrics import evaluate as _evaluate
    return _evaluate(spec, split_df, preds)


# ------------------------------------------------------------------------------------ helpers
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(runner.__file__).parent,
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of the vocabulary (token -> id), 12 hex: parity is per tokenizer."""
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(canonical_json(vocab).encode("utf-8")).hexdigest()[:12]


def _finite(obj):
    """JSON-safe copy: NaN / inf (e.g. Pearson of a constant prediction) become null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _subsample(df, n: int | None):
    if n is None or len(df) <= int(n):
        return df.reset_index(drop=True)
    return df.sample(n=int(n), random_state=SUBSAMPLE_SEED).sort_index().reset_index(drop=True)


def _configure_threads(device: torch.device) -> None:
    if device.type == "cpu":
        try:
            available = len(os.sched_getaffinity(0))
        except AttributeError:
            available = os.cpu_count() or 1
        # never more threads than cores this process may use (containers report the host's)
        torch.set_num_threads(max(1, min(torch.get_num_threads(), available)))


def _load_tokenizer(model_name: str, needs_words: bool):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_name)
    except OSError as exc:
        raise JobFailed(f"model not found: {model_name} ({str(exc).splitlines()[0][:160]})")
    if not tok.is_fast:
        raise JobFailed(f"{model_name}: a fast tokenizer is needed (word alignment)")
    if needs_words:
        try:
            tok([["a"]], is_split_into_words=True)
        except ValueError:  # byte-level BPE (RoBERTa) needs a prefix space for pre-split words
            tok = AutoTokenizer.from_pretrained(model_name, add_prefix_space=True)
    return tok


def _seed_all(seed: int) -> None:
    import random
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def token_target(job, ctx) -> int:
    """The token-controlled target from the referenced multi-task job's result."""
    if not job.depends_on:
        raise JobFailed("token_controlled job without a multi-task job to match")
    ref = job.depends_on[0]
    result = ctx.dependency_results.get(ref)
    if result is None:
        raise JobFailed(f"result of multi-task job {ref} is not available")
    if job.parity == "per_task":
        (task,) = job.tasks
        try:
            return int(result["tokens_per_task"][task])
        except KeyError:
            raise JobFailed(f"multi-task job {ref} has no token count for {task}") from None
    if job.parity not in (None, "total"):
        raise JobFailed(f"unknown parity {job.parity!r}")
    return int(result["token_count"])


# ------------------------------------------------------------------------------------ run_job
def run_job(job, ctx) -> dict:
    started_at = _now()
    cfg = dict(job.config)
    log = ctx.logger
    if job.strategy not in STRATEGY_EXPERIMENT_TYPE:
        raise JobFailed(f"unknown strategy {job.strategy!r}")
    if job.strategy != "multi_task" and len(job.tasks) != 1:
        raise JobFailed(f"{job.strategy} needs exactly one task, got {list(job.tasks)}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _configure_threads(device)
    specs = {name: get_task(name) for name in job.tasks}
    target = token_target(job, ctx) if job.strategy == "token_controlled" else None
    if target is not None and target <= 0:
        raise JobFailed(f"token target {target} from {job.depends_on[0]} is not positive")

    heldout_kinds = [get_task(t).kind for t in (cfg.get("heldout") or {}).get("tasks", ())]
    tokenizer = _load_tokenizer(job.model_name, any(s.kind == "ner" for s in specs.values())
                                or "ner" in heldout_kinds)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # data: subsets are fixed (seed 0), tokenised once, unpadded
    max_train = cfg.get("max_train_examples") or {}
    max_eval = cfg.get("max_eval_examples")
    frames, tasks = {}, {}
    for name, spec in specs.items():
        frames[name] = {
            "train": _subsample(load_split(ctx.data_dir, name, "train"), max_train.get(name)),
            "validation": _subsample(load_split(ctx.data_dir, name, "validation"), max_eval),
            "test": _subsample(load_split(ctx.data_dir, name, "test"), max_eval)}
        length = effective_max_length(spec.max_length, cfg["max_length"], tokenizer)
        enc = {split: encode_split(spec, df, tokenizer, length)
               for split, df in frames[name].items()}
        tasks[name] = TrainTask(spec, enc["train"], enc["validation"], frames[name]["validation"])
        frames[name]["encoded_test"] = enc["test"]

    ckpt_root = ckpt.checkpoints_dir(ctx.job_dir)
    batch_size, accumulation = int(cfg["batch_size"]), int(cfg["grad_accumulation"])
    oom_retry = None
    while True:
        _seed_all(job.seed)
        try:
            model = build_model(job.model_name, specs)
        except OSError as exc:
            raise JobFailed(f"model not found: {job.model_name} "
                            f"({str(exc).splitlines()[0][:160]})") from None
        apply_adapter(model, cfg.get("adapter"))
        if cfg.get("compile") and device.type == "cuda":
            if hasattr(model.encoder, "compile"):
                # in place: the state_dict keys (checkpoints, best/) stay the plain model's
                model.encoder.compile()
            else:
                log.warning("compile: torch %s has no Module.compile (2.2+); running eagerly",
                            torch.__version__)
        setup = TrainSetup(job.strategy, tasks, cfg, int(job.seed), device, pad_id, ckpt_root,
                           evaluate, batch_size, accumulation, target)
        try:
            progress = train(model, setup, ctx)
            break
        except torch.cuda.OutOfMemoryError:
            if oom_retry is not None or batch_size < 2:
                raise JobFailed(f"CUDA out of memory at batch size {batch_size}") from None
            # same effective batch: half the examples per micro-batch, twice the micro-batches
            del model
            gc.collect()
            torch.cuda.empty_cache()
            shutil.rmtree(ckpt_root, ignore_errors=True)  # its batch plan no longer applies
            batch_size, accumulation = batch_size // 2, accumulation * 2
            oom_retry = {"batch_size": batch_size, "grad_accumulation": accumulation}
            log.warning("CUDA out of memory: retrying with batch size %d x %d accumulation",
                        batch_size, accumulation)

    # the test evaluation uses the best validation weights
    best = ckpt.load_best(ckpt_root)
    if best is None:
        raise JobFailed(f"best weights missing or corrupt in {ckpt_root}")
    best_meta, best_state = best
    if best_meta.get("step") != progress.best_step:
        log.warning("best weights are from step %s, progress says %s", best_meta.get("step"),
                    progress.best_step)
    model.load_state_dict(best_state)
    model.to(device)
    dtype = autocast_dtype(str(cfg.get("precision", "auto")), device)

    per_task, test_results = {}, {}
    for name, spec in specs.items():
        preds, loss = predict(model, spec, frames[name]["encoded_test"], pad_id, device, dtype,
                              eval_batch_size(progress.batch_size))
        metrics, pred_df = evaluate(spec, frames[name]["test"], preds)
        metrics = {k: float(v) for k, v in metrics.items()}
        metrics["loss"] = float(loss)
        buffer = io.BytesIO()
        pred_df.to_parquet(buffer, index=False)
        atomic_write_bytes(Path(ctx.job_dir) / "predictions" / f"{name}.parquet",
                           buffer.getvalue())
        per_task[name] = {"primary_metric": spec.primary_metric, "metrics": metrics,
                          "tokens": int(progress.tokens_per_task[name]),
                          "n_test": len(pred_df), "stat_spec": spec.stat_spec(),
                          "predictions": f"predictions/{name}.parquet"}
    if len(specs) == 1:
        (only,) = per_task.values()
        test_results = {f"eval_{k}": v for k, v in only["metrics"].items()}
    else:
        for name, pt in per_task.items():
            test_results.update({f"eval_{name}_{k}": v for k, v in pt["metrics"].items()})
        test_results["eval_loss"] = float(np.mean([pt["metrics"]["loss"]
                                                   for pt in per_task.values()]))
        test_results["eval_primary_mean"] = float(np.mean(
            [pt["metrics"][pt["primary_metric"]] for pt in per_task.values()]))

    def provenance(precision_dtype) -> dict:
        return {"runner_version": runner.__version__, "git_commit": _git_commit(),
                "torch": torch.__version__, "transformers": _transformers_version(),
                "python": platform.python_version(), "device": _device_name(device),
                "precision": (str(precision_dtype).replace("torch.", "") if precision_dtype
                              else "float32"),
                "data_checksums": dict(job.data_checksums),
                "started_at": started_at, "finished_at": _now()}

    # RQ2: the encoder on held-out tasks.  The training checkpoint (finished) is kept until
    # this is done, so a stop here resumes without retraining.
    model_params = parameter_counts(model)
    run_heldout(job, ctx, model, tokenizer, pad_id, device, get_task=get_task,
                load_split=load_split, evaluate=evaluate, subsample=_subsample,
                seed_all=_seed_all, provenance=provenance)

    examples = sum(progress.examples_per_task.values())
    result_config = dict(cfg)
    if target is not None:
        result_config["target_tokens"] = target
    result = {
        "experiment_id": job.job_id,
        "experiment_type": STRATEGY_EXPERIMENT_TYPE[job.strategy],
        "experiment": job.experiment,
        "study": job.study,
        "model": job.model,
        "model_name": job.model_name,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "seed": int(job.seed),
        "tasks": list(job.tasks),
        "config": result_config,
        "dataset_stats": {
            name: {"train_samples": len(t.train), "val_samples": len(t.validation),
                   "test_samples": len(frames[name]["encoded_test"]),
                   "num_labels": 1 if t.spec.kind == "regression" else len(t.spec.labels)}
            for name, t in tasks.items()},
        "model_params": model_params,
        "train_results": {
            "train_loss": progress.train_loss_sum / max(1, progress.micro_steps),
            "train_runtime": round(progress.train_seconds, 3),
            "epochs_trained": round(examples / sum(len(t.train) for t in tasks.values()), 4),
            "train_samples_per_second": round(examples / max(progress.train_seconds, 1e-9), 3),
            "steps": progress.step,
            "best_step": progress.best_step,
            "stopped_early": progress.stopped_early,
            "batch_size": progress.batch_size,
            "grad_accumulation": progress.grad_accumulation,
            "oom_retry": oom_retry},
        "test_results": test_results,
        "token_count": progress.token_count,
        "tokens_per_task": {k: int(v) for k, v in progress.tokens_per_task.items()},
        "per_task": per_task,
        "validation_history": progress.validation_history,
        "provenance": provenance(dtype),
    }
    if job.strategy == "multi_task":
        total_batches = max(1, sum(progress.batches_per_task.values()))
        total_tokens = max(1, progress.token_count)
        result["sampling"] = {
            "strategy": cfg.get("sampling", "proportional"),
            "batches": dict(progress.batches_per_task),
            "batch_share": {t: n / total_batches for t, n in progress.batches_per_task.items()},
            "token_share": {t: n / total_tokens for t, n in progress.tokens_per_task.items()}}
        log.info("realised share of batches %s, of tokens %s", result["sampling"]["batch_share"],
                 result["sampling"]["token_share"])
    if target is not None:
        achieved = progress.token_count
        result["parity"] = {"mode": job.parity or "total", "reference_job": job.depends_on[0],
                            "target_tokens": target, "achieved_tokens": achieved,
                            "relative_gap": abs(achieved - target) / target,
                            "trimmed_examples": progress.trimmed_examples}
    ckpt.prune_finished(ckpt_root)  # keeps best/ weights: RQ2/RQ3 evaluate them later
    return _finite(result)


def _transformers_version() -> str:
    import transformers
    return transformers.__version__


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
