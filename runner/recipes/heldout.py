"""RQ2 held-out evaluation: a finished job's encoder (and adapter) on tasks it never saw.

For every held-out task and seed of ``config.heldout`` (the manifest's ``[heldout]`` table):
copy the job's best encoder, put a fresh head on it, train the head only (``train_mode =
"head"``: encoder frozen) or the head and the LoRA adapter (``"head_and_adapter"``) for the
fixed budget (``max_steps`` optimizer steps on at most ``max_train_examples`` training
examples), test it, and write ``<job_dir>/heldout/<task>/seed<k>/predictions/<task>.parquet``
then ``heldout.json`` (runner.outputs.heldout.heldout_document / write_heldout), last.

The fresh head is trained by the job's own loop (runner.ml.train.train) with one validation
at the end of the budget, so the tested weights are the budget's final weights, and a stop
mid-way resumes from its checkpoint in ``seed<k>/checkpoints/`` (removed once heldout.json is
written).  A (task, seed) whose heldout.json exists is finished and skipped.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from dataclasses import replace

from mtl_contract.files import json_safe
from mtl_contract.schema import HELDOUT_FILE
from runner.jobapi import JobFailed, JobInterrupted
from runner.ml.batching import effective_max_length, encode_split, model_length_limit
from runner.ml.inference import score_and_write
from runner.ml.model import MultiTaskModel, adapter_settings, parameter_counts
from runner.ml.runtime import Device
from runner.ml.train import TrainSetup, TrainTask, autocast_dtype, eval_batch_size, train
from runner.outputs.heldout import heldout_dir, heldout_document, write_heldout
from runner.study.config import HeldoutConfig, TrainConfig


def heldout_config(job_cfg: TrainConfig, heldout: HeldoutConfig) -> TrainConfig:
    """The training config of one fresh head: the job's, with the held-out budget."""
    steps = heldout.max_steps
    return replace(job_cfg, learning_rate=heldout.learning_rate, max_steps=steps,
                   # the table's batch size, not the job's: the same budget for every source
                   batch_size=heldout.batch_size, grad_accumulation=1,
                   # one validation, at the end of the budget: the final weights are tested
                   eval_every=steps, patience=1,
                   # the job's warm-up rule for this budget, at most 10% of it
                   warmup_steps=min(job_cfg.warmup_for(steps)[0], steps // 10),
                   warmup_ratio=None, warmup_cap=None,
                   max_train_examples={}, sampling="proportional", temperature=1.0,
                   examples_cap=None)


def heldout_pending(job_dir, heldout: HeldoutConfig | None) -> list[tuple[str, int]]:
    """(task, seed) pairs still to do, in the manifest's order."""
    if heldout is None:
        return []
    return [(t, s) for t in heldout.tasks for s in heldout.seeds
            if not (heldout_dir(job_dir, t, s) / HELDOUT_FILE).is_file()]


def freeze_for(model: MultiTaskModel, train_mode: str) -> None:
    """Head always trained; encoder frozen, except LoRA A/B in head_and_adapter mode."""
    for name, p in model.encoder.named_parameters():
        p.requires_grad = train_mode == "head_and_adapter" and "lora_" in name


def run_heldout(job, ctx, trained_model, tokenizer, pad_id: int, device: Device, *,
                get_task: Callable, load_split: Callable, evaluate: Callable,
                subsample: Callable, seed_all: Callable, provenance: Callable) -> int:
    """Every pending (task, seed) of the job's ``heldout`` settings; returns how many were
    run.

    ``trained_model`` holds the job's best weights and is not modified.  Between two
    (task, seed) evaluations ``ctx.should_stop()`` -> JobInterrupted (run again to resume).

    Long (about 60 lines) because each (task, seed) run is one sequence read top to bottom:
    data (loaded once per task), fresh head, train, test, document."""
    cfg = job.settings
    heldout = cfg.heldout
    pending = heldout_pending(ctx.job_dir, heldout)
    if not pending:
        return 0
    train_mode = heldout.train_mode
    settings = adapter_settings(cfg.adapter)
    if train_mode == "head_and_adapter" and settings is None:
        raise JobFailed("heldout train_mode head_and_adapter needs an adapter job")
    ho_cfg = heldout_config(cfg, heldout)
    dtype = autocast_dtype(cfg.precision, device)
    data: dict[str, tuple] = {}
    for done, (task, seed) in enumerate(pending):
        if done and ctx.should_stop():
            raise JobInterrupted(f"held-out evaluation stopped before {task} seed {seed}; "
                                 f"run again to resume")
        spec = get_task(task)
        if task not in data:
            frames = {"train": subsample(load_split(ctx.data_dir, task, "train"),
                                         heldout.max_train_examples)}
            for split in ("validation", "test"):
                frames[split] = subsample(load_split(ctx.data_dir, task, split),
                                          heldout.max_eval_examples)
            length = effective_max_length(task, cfg, model_length_limit(
                tokenizer, getattr(trained_model.encoder, "config", None)))
            data[task] = (frames, {k: encode_split(spec, df, tokenizer, length)
                                   for k, df in frames.items()})
        frames, enc = data[task]
        out_dir = heldout_dir(ctx.job_dir, task, seed)
        ctx.logger.info("held-out %s seed %d: %s, %d steps on %d examples", task, seed,
                        train_mode, ho_cfg.max_steps, len(enc["train"]))
        seed_all(seed)  # the fresh head's initialisation and the batch order
        model = MultiTaskModel(_copy_encoder(trained_model.encoder), {task: spec})
        freeze_for(model, train_mode)
        counts = parameter_counts(model)   # heldout.json: total and trainable (contract)
        params = {k: counts[k] for k in ("total", "trainable")}
        setup = TrainSetup(
            strategy="single_task",   # a fresh head: trained and tested like one task's job
            tasks={task: TrainTask(spec, enc["train"], enc["validation"], frames["validation"])},
            config=ho_cfg, seed=seed, device=device, pad_id=pad_id,
            ckpt_root=out_dir / "checkpoints", metrics_fn=evaluate,
            batch_size=ho_cfg.batch_size, grad_accumulation=1)
        progress = train(model, setup, ctx)
        metrics, n_test = score_and_write(
            model, spec, frames["test"], enc["test"], evaluate,
            out_dir / "predictions" / f"{task}.parquet", pad_id=pad_id, device=device,
            dtype=dtype, batch_size=eval_batch_size(progress.batch_size))
        doc = heldout_document(source_job_id=job.job_id, task=task, seed=seed,
                               train_mode=train_mode, adapter=settings, model_params=params,
                               budget=_budget(heldout, progress),
                               per_task_entry=_entry(spec, task, metrics, n_test, progress),
                               provenance=provenance(dtype))
        write_heldout(ctx.job_dir, json_safe(doc))  # NaN metrics -> null
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
        del model
    return len(pending)


def _entry(spec, task: str, metrics: dict, n_test: int, progress) -> dict:
    """The held-out document's test entry: result.json's per-task entry shape."""
    return {"primary_metric": spec.primary_metric, "metrics": metrics,
            "tokens": int(progress.tokens_per_task[task]), "n_test": n_test,
            "stat_spec": spec.stat_spec(), "predictions": f"predictions/{task}.parquet"}


def _budget(heldout: HeldoutConfig, progress) -> dict:
    """What the fresh head was allowed ([heldout]) and what it used."""
    return {"max_steps": heldout.max_steps,
            "batch_size": int(progress.batch_size),
            "max_train_examples": heldout.max_train_examples,
            "steps": int(progress.step),
            "examples": int(sum(progress.examples_per_task.values())),
            "tokens": int(progress.token_count)}


def _copy_encoder(encoder):
    """A trainable copy of the job's encoder.  A compiled one (config compile, CUDA) is copied
    without its compiled forward, which deepcopy cannot copy; the copy runs eagerly."""
    compiled = getattr(encoder, "_compiled_call_impl", None)
    if compiled is None:
        return copy.deepcopy(encoder)
    encoder._compiled_call_impl = None
    try:
        return copy.deepcopy(encoder)
    finally:
        encoder._compiled_call_impl = compiled
