"""RQ2 held-out evaluation: a finished job's encoder (and adapter) on tasks it never saw.

For every held-out task and seed of ``config.heldout`` (the manifest's ``[heldout]`` table):
copy the job's best encoder, put a fresh head on it, train the head only (``train_mode =
"head"``: encoder frozen) or the head and the LoRA adapter (``"head_and_adapter"``) for the
fixed budget (``max_steps`` optimizer steps on at most ``max_train_examples`` training
examples), test it, and write ``<job_dir>/heldout/<task>/seed<k>/predictions/<task>.parquet``
then ``heldout.json`` (runner.adapters.heldout_document / write_heldout), last.

The fresh head is trained by the job's own loop (runner.engine.train.train) with one validation
at the end of the budget, so the tested weights are the budget's final weights, and a stop
mid-way resumes from its checkpoint in ``seed<k>/checkpoints/`` (removed once heldout.json is
written).  A (task, seed) whose heldout.json exists is finished and skipped.
"""

from __future__ import annotations

import copy
import io
import shutil
from collections.abc import Callable

import torch

from runner.adapters import HELDOUT_FILE, heldout_dir, heldout_document, write_heldout
from runner.engine.batching import effective_max_length, encode_split, model_length_limit
from runner.engine.model import MultiTaskModel, adapter_settings, parameter_counts
from runner.engine.train import (
    TrainSetup,
    TrainTask,
    autocast_dtype,
    eval_batch_size,
    predict,
    train,
)
from runner.fsutil import atomic_write_bytes
from runner.jobapi import JobFailed, JobInterrupted


def heldout_config(job_cfg: dict, heldout: dict) -> dict:
    """The training config of one fresh head: the job's, with the held-out budget."""
    steps = int(heldout["max_steps"])
    return {**job_cfg, "learning_rate": float(heldout["learning_rate"]), "max_steps": steps,
            # the table's batch size, not the job's: the same budget for every source job
            "batch_size": int(heldout["batch_size"]), "grad_accumulation": 1,
            # one validation, at the end of the budget: the final weights are the tested ones
            "eval_every": steps, "patience": 1,
            "warmup_steps": min(int(job_cfg["warmup_steps"]), steps // 10),
            "max_train_examples": {}, "sampling": "proportional", "temperature": 1.0,
            "examples_cap": None}


def heldout_pending(job_dir, heldout: dict | None) -> list[tuple[str, int]]:
    """(task, seed) pairs still to do, in the manifest's order."""
    if not heldout:
        return []
    return [(t, int(s)) for t in heldout["tasks"] for s in heldout["seeds"]
            if not (heldout_dir(job_dir, t, s) / HELDOUT_FILE).is_file()]


def freeze_for(model: MultiTaskModel, train_mode: str) -> None:
    """Head always trained; encoder frozen, except LoRA A/B in head_and_adapter mode."""
    for name, p in model.encoder.named_parameters():
        p.requires_grad = train_mode == "head_and_adapter" and "lora_" in name


def run_heldout(job, ctx, trained_model, tokenizer, pad_id: int, device: torch.device, *,
                get_task: Callable, load_split: Callable, evaluate: Callable,
                subsample: Callable, seed_all: Callable, provenance: Callable) -> int:
    """Every pending (task, seed) of ``job.config["heldout"]``; returns how many were run.

    ``trained_model`` holds the job's best weights and is not modified.  Between two
    (task, seed) evaluations ``ctx.should_stop()`` -> JobInterrupted (run again to resume)."""
    cfg = job.config
    heldout = cfg.get("heldout")
    pending = heldout_pending(ctx.job_dir, heldout)
    if not pending:
        return 0
    train_mode = heldout["train_mode"]
    settings = adapter_settings(cfg.get("adapter"))
    if train_mode == "head_and_adapter" and settings is None:
        raise JobFailed("heldout train_mode head_and_adapter needs an adapter job")
    ho_cfg = heldout_config(cfg, heldout)
    dtype = autocast_dtype(str(cfg.get("precision", "auto")), device)
    data: dict[str, tuple] = {}
    for done, (task, seed) in enumerate(pending):
        if done and ctx.should_stop():
            raise JobInterrupted(f"held-out evaluation stopped before {task} seed {seed}; "
                                 f"run again to resume")
        spec = get_task(task)
        if task not in data:
            frames = {"train": subsample(load_split(ctx.data_dir, task, "train"),
                                         heldout["max_train_examples"])}
            for split in ("validation", "test"):
                frames[split] = subsample(load_split(ctx.data_dir, task, split),
                                          heldout["max_eval_examples"])
            length = effective_max_length(task, cfg, model_length_limit(
                tokenizer, getattr(trained_model.encoder, "config", None)))
            enc = {k: encode_split(spec, df, tokenizer, length) for k, df in frames.items()}
            data[task] = (frames, enc)
        frames, enc = data[task]
        out_dir = heldout_dir(ctx.job_dir, task, seed)
        ctx.logger.info("held-out %s seed %d: %s, %d steps on %d examples", task, seed,
                        train_mode, ho_cfg["max_steps"], len(enc["train"]))
        seed_all(seed)  # the fresh head's initialisation and the batch order
        model = MultiTaskModel(_copy_encoder(trained_model.encoder), {task: spec})
        freeze_for(model, train_mode)
        params = parameter_counts(model)
        setup = TrainSetup("single_task", {task: TrainTask(spec, enc["train"], enc["validation"],
                                                           frames["validation"])},
                           ho_cfg, int(seed), device, pad_id, out_dir / "checkpoints", evaluate,
                           int(ho_cfg["batch_size"]), 1, None)
        progress = train(model, setup, ctx)
        preds, loss = predict(model, spec, enc["test"], pad_id, device, dtype,
                              eval_batch_size(progress.batch_size))
        metrics, pred_df = evaluate(spec, frames["test"], preds)
        metrics = {k: float(v) for k, v in metrics.items()}
        metrics["loss"] = float(loss)
        buffer = io.BytesIO()
        pred_df.to_parquet(buffer, index=False)
        atomic_write_bytes(out_dir / "predictions" / f"{task}.parquet", buffer.getvalue())
        entry = {"primary_metric": spec.primary_metric, "metrics": metrics,
                 "tokens": int(progress.tokens_per_task[task]), "n_test": len(pred_df),
                 "stat_spec": spec.stat_spec(), "predictions": f"predictions/{task}.parquet"}
        budget = {"max_steps": int(heldout["max_steps"]),
                  "batch_size": int(progress.batch_size),
                  "max_train_examples": int(heldout["max_train_examples"]),
                  "steps": int(progress.step),
                  "examples": int(sum(progress.examples_per_task.values())),
                  "tokens": int(progress.token_count)}
        doc = heldout_document(source_job_id=job.job_id, task=task, seed=seed,
                               train_mode=train_mode, adapter=settings, model_params=params,
                               budget=budget, per_task_entry=entry,
                               provenance=provenance(dtype))
        write_heldout(ctx.job_dir, _json_safe(doc))
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
        del model
    return len(pending)


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


def _json_safe(doc: dict) -> dict:
    from runner.engine.job import _finite  # NaN metrics (constant predictions) -> null

    return _finite(doc)
