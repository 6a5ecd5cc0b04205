"""The job's result document, ``<job_dir>/result.json`` (results/README.md, "result.json"):
built here from what the job computed; the executor writes it, last.  stats reads it back
(stats.read).

Long because the document is: one field a line, in the file's order, is easier to check
against the README than pieces.  No torch: the recipe (runner.recipes.train_job) hands in the
training progress, the job's data and the numbers it measured.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mtl_contract.files import canonical_json
from runner.study.config import TrainConfig, peak_lr_factor
from runner.study.strategies import STRATEGIES, experiment_type


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of the vocabulary (token -> id), 12 hex: parity is per tokenizer."""
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(canonical_json(vocab).encode("utf-8")).hexdigest()[:12]


def truncation_entry(enc: dict) -> dict:
    """``per_task[task]["truncation"]``: the length and how many examples it cut."""
    return {"max_length": enc["train"].max_length,
            "train_truncated": enc["train"].truncated, "train_examples": len(enc["train"]),
            "test_truncated": enc["test"].truncated, "test_examples": len(enc["test"])}


def document_header(job, tokenizer, config: dict) -> dict:
    """result.json's first fields: who the job is, and its config."""
    return {
        "experiment_id": job.job_id,
        "experiment_type": experiment_type(job.strategy),
        "experiment": job.experiment,
        "study": job.study,
        "model": job.model,
        "model_name": job.model_name,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "seed": int(job.seed),
        "tasks": list(job.tasks),
        "config": config,
    }


def skipped_document(job, cfg: TrainConfig, tokenizer, parity: tuple, needed: float,
                     tokens_per_epoch: int, provenance: dict) -> dict:
    """token_controlled with ``unreachable_parity = "skip"``: the result.json of a job NOT run
    because its target (``parity``: target, choice, candidates), from the reference's measured
    tokens, needs ``needed`` passes over its task, more than its epoch cap -- its row could
    only read "parity not reached".  results/README.md: ``skipped``."""
    target, choice, targets = parity
    (task,) = job.tasks
    cap = cfg.token_controlled_max_epochs
    detail = (f"parity unreachable: the target {target:,} tokens from {job.depends_on[0]} "
              f"needs {needed:.2f} epochs of {task} ({tokens_per_epoch:,} tokens each), above "
              f"the cap of {cap} (token_controlled_max_epochs)")
    config = {**job.config, "target_tokens": target, "parity_target": choice,
              "token_controlled_max_epochs": cap}
    return {
        **document_header(job, tokenizer, config),
        "skipped": {"reason": "parity_unreachable", "detail": detail,
                    "epochs_needed": round(needed, 4), "epoch_cap": cap,
                    "target_tokens": int(target), "tokens_per_epoch": tokens_per_epoch},
        "parity": {"mode": job.parity or "total", "reference_job": job.depends_on[0],
                   "target": choice, "targets": targets, "target_tokens": int(target),
                   "achieved_tokens": 0, "reached": False,
                   "epochs_run": 0.0, "epochs_needed": round(needed, 4), "epoch_cap": cap,
                   "stopped_because": "parity_unreachable"},
        "token_count": 0,
        "tokens_per_task": {task: 0},
        "per_task": {},
        "provenance": provenance,
    }


def per_task_entries(specs: dict, scored: dict, progress, frames: dict) -> dict[str, dict]:
    """result.json's ``per_task``: each task's test metrics, tokens, predictions, truncation."""
    per_task = {}
    for name, spec in specs.items():
        metrics, rel, n_test = scored[name]
        per_task[name] = {"primary_metric": spec.primary_metric, "metrics": metrics,
                          "tokens": int(progress.tokens_per_task[name]),
                          "n_test": n_test, "stat_spec": spec.stat_spec(),
                          "predictions": rel,
                          "max_length": frames[name]["truncation"]["max_length"],
                          "truncation": frames[name]["truncation"]}
    return per_task


def eval_results(per_task: dict[str, dict]) -> dict:
    """result.json's ``test_results``: ``eval_<metric>`` for one task; for several,
    ``eval_<task>_<metric>`` plus the mean loss and the mean primary metric."""
    if len(per_task) == 1:
        (only,) = per_task.values()
        return {f"eval_{k}": v for k, v in only["metrics"].items()}
    test_results = {}
    for name, pt in per_task.items():
        test_results.update({f"eval_{name}_{k}": v for k, v in pt["metrics"].items()})
    test_results["eval_loss"] = float(np.mean([pt["metrics"]["loss"]
                                               for pt in per_task.values()]))
    test_results["eval_primary_mean"] = float(np.mean(
        [pt["metrics"][pt["primary_metric"]] for pt in per_task.values()]))
    return test_results


def schedule_fields(cfg: TrainConfig, progress) -> dict:
    """train_results' record of the optimizer schedule the job ran: its planned steps, the
    warm-up they gave (and the rule that set it), the peak learning rate the schedule reaches
    within them, and the examples each optimizer step takes."""
    warmup, rule = cfg.warmup_for(progress.total_steps)
    return {"planned_steps": progress.total_steps,
            "examples_per_step": progress.batch_size * progress.grad_accumulation,
            "warmup_steps": warmup, "warmup_rule": rule,
            "peak_learning_rate": cfg.learning_rate
            * peak_lr_factor(warmup, progress.total_steps)}


def result_document(job, cfg: TrainConfig, tokenizer, data, progress, oom_retry,
                    per_task: dict, model_params: dict, parity: tuple, at_best: tuple,
                    provenance: dict) -> dict:
    """result.json of a trained and tested job.  ``data``: the recipe's JobData (its tasks'
    splits, test frames, rows decontamination dropped); ``parity``: (target tokens or None,
    the target's name); ``at_best``: (tokens, tokens per task) at the best weights."""
    target, choice = parity
    tasks = data.tasks
    # the job's own tasks' (a text control's masked-LM text is counted in its tokens only)
    examples = sum(progress.examples_per_task.get(t, 0) for t in tasks)
    result_config = dict(job.config)   # the job's own config, as its id hashed it
    if target is not None:
        result_config["target_tokens"] = target
        result_config["parity_target"] = choice
        result_config["token_controlled_max_epochs"] = cfg.token_controlled_max_epochs
    result = {
        **document_header(job, tokenizer, result_config),
        "dataset_stats": {
            name: {"train_samples": len(t.train), "val_samples": len(t.validation),
                   "test_samples": len(data.frames[name]["encoded_test"]),
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
            **schedule_fields(cfg, progress),
            "batch_order": progress.batch_order,
            "dropout": progress.dropout,
            "oom_retry": oom_retry},
        "test_results": eval_results(per_task),
        "token_count": progress.token_count,
        "tokens_per_task": {k: int(v) for k, v in progress.tokens_per_task.items()},
        "tokens_at_best": at_best[0],
        "tokens_per_task_at_best": at_best[1],
        "test_weights": STRATEGIES[job.strategy].test_weights,
        "per_task": per_task,
        "validation_history": progress.validation_history,
        "provenance": provenance,
    }
    for name, n in data.dropped.items():
        if n is not None:   # decontaminate = true only: other results keep their fields
            result["dataset_stats"][name]["decontaminated_dropped"] = n
    return result


def parity_block(job, cfg: TrainConfig, progress, parity: tuple, tokens_per_epoch: int,
                 reference_tokens: dict | None = None) -> dict:
    """The ``parity`` record of a token-controlled job (``parity``: target, choice,
    candidates; ``tokens_per_epoch``: its task's real training tokens): what it reached, and
    why it stopped; a text control (``reference_tokens``:
    its multi-task job's per task) has no epoch cap and records the match task by task."""
    target, choice, targets = parity
    achieved = progress.token_count
    reached = achieved >= target
    block = {"mode": job.parity or "total", "reference_job": job.depends_on[0],
             "target": choice, "targets": targets, "target_tokens": target,
             "achieved_tokens": achieved, "relative_gap": abs(achieved - target) / target,
             "trimmed_examples": progress.trimmed_examples, "reached": reached,
             # both in passes over the task's real training tokens, so they compare
             "epochs_run": round(achieved / max(1, tokens_per_epoch), 4),
             "epochs_needed": round(target / max(1, tokens_per_epoch), 4),
             "epoch_cap": cfg.token_controlled_max_epochs,
             "stopped_because": "target_reached" if reached else "epoch_cap"}
    if reference_tokens is not None:
        block["epoch_cap"] = None
        block["per_task"] = {t: {"reference_tokens": n,
                                 "achieved_tokens": int(progress.tokens_per_task.get(t, 0)),
                                 "relative_gap": abs(progress.tokens_per_task.get(t, 0) - n)
                                 / n if n else None}
                             for t, n in reference_tokens.items()}
    return block


def control_block(cfg: TrainConfig, data, progress) -> dict:
    """result.json's ``control`` of a token-controlled job: "repeat" (the methodology's), or
    the text-matched control's stream: its tasks, tokens, masked tokens, head and loss."""
    if not data.stream:
        return {"kind": "repeat"}
    stream = list(data.stream)
    batches = sum(progress.batches_per_task.get(t, 0) for t in stream)
    return {"kind": "text", "tasks": list(cfg.control["tasks"]), "stream_tasks": stream,
            "mask_probability": float(cfg.control["mask_probability"]),
            "stream_tokens_per_task": {t: int(progress.tokens_per_task.get(t, 0))
                                       for t in stream},
            "masked_tokens_per_task": {t: int(n) for t, n in progress.masked_per_task.items()},
            "stream_batches": batches,
            "mlm_loss_mean": progress.mlm_loss_sum / batches if batches else None,
            "mlm_head": data.mlm_head}


def add_sampling_and_parity(result: dict, job, cfg: TrainConfig, data, progress,
                            parity: tuple, tokens_per_epoch: int, log) -> None:
    """Jobs that sample between tasks: the realised sampling shares; token-controlled: the
    parity and control blocks (``parity``: target or None, choice, candidates)."""
    if STRATEGIES[job.strategy].samples_tasks:
        total_batches = max(1, sum(progress.batches_per_task.values()))
        total_tokens = max(1, progress.token_count)
        result["sampling"] = {
            "strategy": cfg.sampling,   # the file's name for the sampling rule
            "batches": dict(progress.batches_per_task),
            "batch_share": {t: n / total_batches for t, n in progress.batches_per_task.items()},
            "token_share": {t: n / total_tokens for t, n in progress.tokens_per_task.items()}}
        log.info("realised share of batches %s, of tokens %s", result["sampling"]["batch_share"],
                 result["sampling"]["token_share"])
    if parity[0] is not None:
        result["parity"] = p = parity_block(job, cfg, progress, parity, tokens_per_epoch,
                                            data.reference_tokens)
        result["control"] = control_block(cfg, data, progress)
        if not p["reached"]:
            log.warning("parity not reached: %d of %d tokens (gap %.1f%%) after %s of %s "
                        "epochs needed (cap %d)", p["achieved_tokens"], parity[0],
                        100 * p["relative_gap"], p["epochs_run"], p["epochs_needed"],
                        p["epoch_cap"])
