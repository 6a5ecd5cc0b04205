"""``run_job(job, ctx)``: what one planned job computes, from prepared data to result dict.

resolve the job -> load and tokenise its data (each task cut at its effective max_length,
truncations counted) -> train (resuming from the newest intact checkpoint) -> test the best
weights (token_controlled: the final ones) -> ``predictions/<task>.parquet`` -> held-out
evaluation (RQ2, ``config.heldout``: runner.recipes.heldout) -> token_controlled: test its best
validation weights too (``predictions/best_weights/``) -> return the result dict of
results/README.md (the executor writes it as ``result.json``, last).

``config.adapter`` (RQ2): the encoder is wrapped with LoRA before training, so only the adapter
and the task heads train (multi-task jobs: one adapter shared by every task head).
"""

from __future__ import annotations

import gc
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import runner
from mtl_contract.files import json_safe
from runner.data.splits import subsample, validation_subset
from runner.jobapi import JobFailed, JobInterrupted
from runner.ml import checkpoint as ckpt
from runner.ml.batching import (
    EncodedSplit,
    effective_max_length,
    encode_split,
    model_length_limit,
)
from runner.ml.inference import score_and_write
from runner.ml.mlm import MaskSpec, attach_mlm_head
from runner.ml.model import apply_adapter, build_model, parameter_counts
from runner.ml.runtime import (
    CudaOutOfMemory,
    compile_module,
    configure_threads,
    device_name,
    empty_cuda_cache,
    pick_device,
    seed_all,
    torch_version,
    transformers_version,
)
from runner.ml.train import (
    TrainSetup,
    TrainTask,
    autocast_dtype,
    best_validation_root,
    epoch_cap,
    epochs_needed,
    eval_batch_size,
    tokens_at_best,
    train,
)
from runner.outputs.provenance import git_commit, now
from runner.outputs.result import (
    add_sampling_and_parity,
    per_task_entries,
    result_document,
    skipped_document,
    truncation_entry,
)
from runner.recipes.heldout import run_heldout
from runner.study.compat import reference_best_entry
from runner.study.config import TrainConfig
from runner.study.strategies import STRATEGIES


# Seams to the data side, looked up at call time so tests can substitute them.
def get_task(name: str):
    from runner.data.tasks import get_task as _get_task
    return _get_task(name)


def load_split(data_dir, task: str, split: str):
    from runner.data.splits import load_split as _load_split
    return _load_split(data_dir, task, split)


def decontaminate_train(data_dir, task: str, train, setting):
    from runner.data.contamination import decontaminate_train as _decontaminate_train
    return _decontaminate_train(data_dir, task, train, setting)


def evaluate(spec, split_df, preds):
    from runner.ml.metrics import evaluate as _evaluate
    return _evaluate(spec, split_df, preds)


# ------------------------------------------------------------------------------------ helpers
def load_tokenizer(model_name: str, needs_words: bool):
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


def parity_targets(job, ctx) -> dict[str, int | None]:
    """Both candidate token targets from the referenced multi-task job's result: its tokens
    at the end ("total") and at its best validation checkpoint ("best"; None where its
    result does not record them) -- all of its tasks, or this task's (parity per_task)."""
    if not job.depends_on:
        raise JobFailed("token_controlled job without a multi-task job to match")
    ref = job.depends_on[0]
    result = ctx.dependency_results.get(ref)
    if result is None:
        raise JobFailed(f"result of multi-task job {ref} is not available")
    entry = reference_best_entry(result)
    if job.parity == "per_task":
        (task,) = job.tasks
        try:
            total = int(result["tokens_per_task"][task])
        except KeyError:
            raise JobFailed(f"multi-task job {ref} has no token count for {task}") from None
        best = (result.get("tokens_per_task_at_best")
                or entry.get("tokens_per_task") or {}).get(task)
        return {"total": total, "best": None if best is None else int(best)}
    if job.parity not in (None, "total"):
        raise JobFailed(f"unknown parity {job.parity!r}")
    best = result.get("tokens_at_best", entry.get("tokens"))
    return {"total": int(result["token_count"]), "best": None if best is None else int(best)}


def reference_tokens_per_task(job, ctx, choice: str) -> dict[str, int]:
    """The multi-task job's real tokens per task at the target ``choice`` ("total": its end,
    "best": its best validation checkpoint): what a text control matches task by task."""
    result = ctx.dependency_results[job.depends_on[0]]
    per_task = result.get("tokens_per_task") or {}
    if choice == "best":
        per_task = (result.get("tokens_per_task_at_best")
                    or reference_best_entry(result).get("tokens_per_task") or {})
    return {str(t): int(n) for t, n in per_task.items()}


def token_target(job, ctx) -> tuple[int, str, dict[str, int | None]]:
    """(target, which one: config ``parity_target``, the candidates of :func:`parity_targets`)."""
    targets = parity_targets(job, ctx)
    choice = job.settings.parity_target
    if choice not in targets:
        raise JobFailed(f"unknown parity_target {choice!r}")
    if targets[choice] is None:
        raise JobFailed(f"multi-task job {job.depends_on[0]} records no tokens at its best "
                        f"checkpoint for {job.tasks[0]} (its result predates "
                        f"tokens_per_task_at_best): run it again, or use parity_target = "
                        f"\"total\"")
    if targets[choice] <= 0:
        raise JobFailed(f"token target {targets[choice]} from {job.depends_on[0]} is not "
                        f"positive")
    return targets[choice], choice, targets


def _length_limit(model_name: str, tokenizer) -> int | None:
    """The model's own input limit (its config's position embeddings, the tokenizer's)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_name)
    except (OSError, ValueError) as exc:
        raise JobFailed(f"model not found: {model_name} ({str(exc).splitlines()[0][:160]})")
    return model_length_limit(tokenizer, config)


def score_test(model, specs, frames, pad_id, device, dtype, batch_size: int, job_dir,
                 folder: str = "predictions") -> dict[str, tuple[dict, str, int]]:
    """Per task: (test metrics with the loss, predictions file relative to the job folder,
    test units) of ``model`` as it is now; the predictions are written under ``folder``."""
    out = {}
    for name, spec in specs.items():
        rel = f"{folder}/{name}.parquet"
        metrics, n_test = score_and_write(
            model, spec, frames[name]["test"], frames[name]["encoded_test"], evaluate,
            Path(job_dir) / rel, pad_id=pad_id, device=device, dtype=dtype,
            batch_size=batch_size)
        out[name] = (metrics, rel, n_test)
    return out


def load_weights(model, root: Path, step, log) -> None:
    """Load ``root``/best/ into ``model``; a warning if they are not from ``step``."""
    best = ckpt.load_best(root)
    if best is None:
        raise JobFailed(f"best weights missing or corrupt in {root}")
    meta, state = best
    if meta.get("step") != step:
        log.warning("weights in %s are from step %s, expected %s", root, meta.get("step"), step)
    model.load_state_dict(state)


def tokens_per_epoch(split: EncodedSplit) -> int:
    """Real training tokens of one pass over ``split``."""
    return int(split.lengths.sum())


def unreachable_document(job, cfg: TrainConfig, tokenizer, data, parity: tuple,
                         provenance) -> dict | None:
    """token_controlled with ``unreachable_parity = "skip"``: the result.json of a job NOT
    run because its target needs more passes over its task than its epoch cap
    (runner.outputs.result.skipped_document), or None when the target is within reach (the
    job runs)."""
    train_split = data.tasks[job.tasks[0]].train
    needed = epochs_needed(parity[0], train_split)
    if needed <= epoch_cap(cfg):
        return None
    return skipped_document(job, cfg, tokenizer, parity, needed, tokens_per_epoch(train_split),
                            provenance(None))


# ------------------------------------------------------------------------------------ run_job
@dataclass
class JobData:
    """A job's tasks, read and tokenised once: per task its frames (train, validation, test,
    encoded_test, truncation), its training view, and the rows decontamination dropped; a
    text-matched control also the other tasks' training text (``stream``)."""
    frames: dict[str, dict]
    tasks: dict[str, TrainTask]
    dropped: dict[str, int | None]
    stream: dict[str, EncodedSplit] | None = None
    mlm_head: dict | None = None       # result.json's control.mlm_head (text control)
    mask: MaskSpec | None = None       # its masking (runner.ml.mlm)
    reference_tokens: dict | None = None  # its multi-task job's tokens per task at the target


class JobTracking:
    """The job's experiment-tracking run (runner.observe.tracking), opened by the training
    loop once it knows the restored step (``open``), closed here with how the job ended.
    With no backends (the default) nothing is imported and every call is a no-op."""

    def __init__(self, job, ctx):
        self.job, self.ctx = job, ctx
        self.backends = tuple(getattr(ctx, "tracking", ()) or ())
        self.tracker = None

    def open(self, resume_step: int):
        if not self.backends:
            return None
        from runner.observe.tracking import open_tracker  # torch-free; lazily
        if self.tracker is not None:   # a CUDA OOM retry starts the job again from scratch
            self.tracker.close("interrupted")
        job, ctx = self.job, self.ctx
        results_dir = getattr(ctx, "results_dir", None) or Path(ctx.job_dir).parent
        tags = {"study": job.study, "experiment": job.experiment, "model": job.model,
                "tasks": "+".join(job.tasks), "strategy": job.strategy, "seed": int(job.seed)}
        self.tracker = open_tracker(self.backends, results_dir, job.job_id, tags=tags,
                                    config=dict(job.config), logger=ctx.logger,
                                    resume_step=resume_step)
        return self.tracker

    def final(self, metrics: dict, step: int) -> None:
        if self.tracker is not None:
            self.tracker.log_final(metrics, step=step)

    def close(self, status: str) -> None:
        if self.tracker is not None:
            self.tracker.close(status)
            self.tracker = None


def run_job(job, ctx) -> dict:
    """The executors' default job function (runner.jobapi): the job, its
    experiment-tracking run closed with how it ended (finished, interrupted, failed)."""
    tracking = JobTracking(job, ctx)
    try:
        result = _run_job(job, ctx, tracking)
    except JobInterrupted:
        tracking.close("interrupted")
        raise
    except BaseException:
        tracking.close("failed")
        raise
    tracking.close("finished")
    return result


def _run_job(job, ctx, tracking: JobTracking) -> dict:
    """Read the data, train (resuming where a checkpoint is), test, run RQ2's held-out tasks,
    return the result document.  One step a line or a call, in the order they happen.

    About a screen: the order of the calls is the job's order of events (RQ2 before the
    token-controlled re-test), so it stays in one place."""
    started_at = now()
    cfg = job.settings
    log = ctx.logger
    if job.strategy not in STRATEGIES:
        raise JobFailed(f"unknown strategy {job.strategy!r}")
    strategy = STRATEGIES[job.strategy]
    if not strategy.samples_tasks and len(job.tasks) != 1:
        raise JobFailed(f"{job.strategy} needs exactly one task, got {list(job.tasks)}")
    device = pick_device()
    if device.type == "cpu":
        configure_threads()
    specs = {name: get_task(name) for name in job.tasks}
    to_target = strategy.token_target
    target, choice, targets = token_target(job, ctx) if to_target else (None, None, None)

    heldout_kinds = [get_task(t).kind for t in (cfg.heldout.tasks if cfg.heldout else ())]
    stream_specs = {name: get_task(name) for name in stream_tasks(cfg, job)}
    tokenizer = load_tokenizer(job.model_name, any(
        s.kind == "ner" for s in [*specs.values(), *stream_specs.values()])
        or "ner" in heldout_kinds)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    limit = _length_limit(job.model_name, tokenizer)
    data = load_job_data(ctx, cfg, specs, tokenizer, limit)
    data.stream = load_stream(ctx, cfg, stream_specs, tokenizer, limit)
    if data.stream:
        try:
            data.mask = MaskSpec.of(tokenizer, cfg.control["mask_probability"])
        except ValueError as exc:
            raise JobFailed(f"text control: {exc}") from None
        data.reference_tokens = reference_tokens_per_task(job, ctx, choice)
    if to_target and not data.stream and cfg.unreachable_parity == "skip":
        # the text control has no epoch cap: it replays its multi-task job, always in reach
        skipped = unreachable_document(job, cfg, tokenizer, data, (target, choice, targets),
                                       provenance_of(job, device, started_at))
        if skipped is not None:
            log.warning("not run: %s", skipped["skipped"]["detail"])
            return json_safe(skipped)

    ckpt_root = ckpt.checkpoints_dir(ctx.job_dir)
    model, progress, oom_retry = train_with_oom_retry(job, ctx, cfg, specs, data, device,
                                                      pad_id, ckpt_root, target, tracking.open)
    # the test evaluation uses best/: the best validation weights (test_weights "final", the
    # methodology's rule for token_controlled: the final ones; the best are tested below)
    final_first = strategy.test_weights == "final"
    tested_step = progress.step if final_first else progress.best_step
    load_weights(model, ckpt_root, tested_step, log)
    model.to(device)
    dtype = autocast_dtype(cfg.precision, device)
    test_batch = eval_batch_size(progress.batch_size)
    ctx.check_owner()   # fenced: the predictions are the job's owner's to write
    scored = score_test(model, specs, data.frames, pad_id, device, dtype, test_batch,
                        ctx.job_dir)
    per_task = per_task_entries(specs, scored, progress, data.frames)
    tracking.final({"test": {name: m for name, (m, _, _) in scored.items()}}, progress.step)

    provenance = provenance_of(job, device, started_at)
    # RQ2: the encoder on held-out tasks.  The training checkpoint (finished) is kept until
    # this is done, so a stop here resumes without retraining.
    model_params = parameter_counts(model)
    run_heldout(job, ctx, model, tokenizer, pad_id, device, get_task=get_task,
                load_split=load_split, evaluate=evaluate, subsample=subsample,
                seed_all=seed_all, provenance=provenance)
    if final_first:  # after RQ2, which evaluates the weights tested first
        load_weights(model, best_validation_root(ckpt_root), progress.best_step, log)
        ctx.check_owner()
        scored = score_test(model, specs, data.frames, pad_id, device, dtype, test_batch,
                            ctx.job_dir, "predictions/best_weights")
        _add_best_weights_scores(per_task, scored, progress, tracking)

    result = result_document(job, cfg, tokenizer, data, progress, oom_retry, per_task,
                             model_params, (target, choice), tokens_at_best(progress),
                             provenance(dtype))
    add_sampling_and_parity(result, job, cfg, data, progress, (target, choice, targets),
                            tokens_per_epoch(data.tasks[job.tasks[0]].train), log)
    # checkpoints/ stays whole: the executor prunes it only once result.json is on disk, so
    # a kill before that resumes from the finished checkpoint instead of retraining
    return json_safe(result)


def _add_best_weights_scores(per_task: dict, scored: dict, progress, tracking) -> None:
    """token_controlled: its best validation weights' test scores, next to the final ones."""
    best_tokens = tokens_at_best(progress)[1]
    tracking.final({"test_best": {name: m for name, (m, _, _) in scored.items()}},
                   progress.step)
    for name, (metrics, rel, _) in scored.items():
        per_task[name]["best_weights"] = {"metrics": metrics, "predictions": rel,
                                          "step": progress.best_step,
                                          "tokens": best_tokens[name]}


def provenance_of(job, device, started_at: str):
    """result.json's (and heldout.json's) ``provenance``, given the precision a document's
    numbers were computed at; ``finished_at`` is when it is called."""
    def provenance(precision_dtype) -> dict:
        return {"runner_version": runner.__version__, "git_commit": git_commit(),
                "torch": torch_version(), "transformers": transformers_version(),
                "python": platform.python_version(), "device": device_name(device),
                "precision": (str(precision_dtype).replace("torch.", "") if precision_dtype
                              else "float32"),
                "data_checksums": dict(job.data_checksums),
                "started_at": started_at, "finished_at": now()}
    return provenance


def load_job_data(ctx, cfg: TrainConfig, specs: dict, tokenizer, limit: int | None) -> JobData:
    """Subsets fixed (seed 0), tokenised once, unpadded, cut at each task's length."""
    log = ctx.logger
    max_train = cfg.max_train_examples or {}
    max_eval = cfg.max_eval_examples
    frames, tasks, dropped = {}, {}, {}
    for name, spec in specs.items():
        # decontaminate = true: without the units that overlap an evaluated one
        # (runner.data.contamination)
        train_df, dropped[name] = decontaminate_train(
            ctx.data_dir, name, load_split(ctx.data_dir, name, "train"), cfg.decontaminate)
        frames[name] = {
            "train": subsample(train_df, max_train.get(name)),
            "validation": validation_subset(
                spec.kind, subsample(load_split(ctx.data_dir, name, "validation"), max_eval),
                (cfg.max_validation_examples or {}).get(name)),
            "test": subsample(load_split(ctx.data_dir, name, "test"), max_eval)}
        length = effective_max_length(name, cfg, limit)
        enc = {split: encode_split(spec, df, tokenizer, length)
               for split, df in frames[name].items()}
        tasks[name] = TrainTask(spec, enc["train"], enc["validation"], frames[name]["validation"])
        frames[name]["encoded_test"] = enc["test"]
        frames[name]["truncation"] = truncation_entry(enc)
        if enc["train"].truncated or enc["test"].truncated:
            log.info("%s: cut at %d tokens: %d of %d training, %d of %d test examples", name,
                     length, enc["train"].truncated, len(enc["train"]), enc["test"].truncated,
                     len(enc["test"]))
    return JobData(frames, tasks, dropped)


def stream_tasks(cfg: TrainConfig, job) -> tuple[str, ...]:
    """A text-matched control's masked-LM tasks: its multi-task job's others (else none)."""
    control = cfg.control or {}
    if control.get("kind") != "text":
        return ()
    tasks = list(control.get("tasks") or ())
    if len(job.tasks) != 1 or job.tasks[0] not in tasks or len(tasks) < 2:
        raise JobFailed(f"text control of {list(job.tasks)}: config.control.tasks {tasks} "
                        "must hold its task and at least one other")
    return tuple(t for t in tasks if t != job.tasks[0])


def load_stream(ctx, cfg: TrainConfig, specs: dict, tokenizer, limit: int | None
                ) -> dict[str, EncodedSplit] | None:
    """A text control's stream tasks' training text: the subsets, cuts and decontamination
    their multi-task job trained on (its settings are the job's), tokenised as it did."""
    if not specs:
        return None
    out = {}
    for name, spec in specs.items():
        train_df, _ = decontaminate_train(ctx.data_dir, name,
                                          load_split(ctx.data_dir, name, "train"),
                                          cfg.decontaminate)
        out[name] = encode_split(spec, subsample(train_df, (cfg.max_train_examples or {})
                                                 .get(name)),
                                 tokenizer, effective_max_length(name, cfg, limit))
    return out


def train_with_oom_retry(job, ctx, cfg: TrainConfig, specs: dict, data: JobData, device,
                         pad_id: int, ckpt_root: Path, target: int | None,
                         open_tracker=None):
    """(model, progress, oom_retry): the model built (seeded), adapted and trained; a CUDA
    out-of-memory error retries once from scratch at half the batch and twice the
    accumulation (the same effective batch), recorded as ``oom_retry``."""
    log = ctx.logger
    batch_size, accumulation = cfg.batch_size, cfg.grad_accumulation
    oom_retry = None
    while True:
        seed_all(job.seed)
        try:
            model = build_model(job.model_name, specs)
        except OSError as exc:
            raise JobFailed(f"model not found: {job.model_name} "
                            f"({str(exc).splitlines()[0][:160]})") from None
        data.mlm_head = attach_stream_head(job, cfg, model, data)
        apply_adapter(model, cfg.adapter)
        if cfg.compile:   # where it cannot (CPU, old GPU or torch): eagerly, as said
            compile_module(model.encoder, device, log)
        setup = TrainSetup(
            strategy=job.strategy, tasks=data.tasks, config=cfg, seed=int(job.seed),
            device=device, pad_id=pad_id, ckpt_root=ckpt_root, metrics_fn=evaluate,
            batch_size=batch_size, grad_accumulation=accumulation, target_tokens=target,
            open_tracker=open_tracker, stream=data.stream,
            stream_order=tuple((cfg.control or {}).get("tasks") or ()), mask=data.mask)
        try:
            progress = train(model, setup, ctx)
        except CudaOutOfMemory:
            if oom_retry is not None or batch_size < 2:
                raise JobFailed(f"CUDA out of memory at batch size {batch_size}") from None
            # same effective batch: half the examples per micro-batch, twice the micro-batches
            del model
            gc.collect()
            empty_cuda_cache()
            shutil.rmtree(ckpt_root, ignore_errors=True)  # its batch plan no longer applies
            batch_size, accumulation = batch_size // 2, accumulation * 2
            oom_retry = {"batch_size": batch_size, "grad_accumulation": accumulation}
            log.warning("CUDA out of memory: retrying with batch size %d x %d accumulation",
                        batch_size, accumulation)
            continue
        if progress.batch_size != cfg.batch_size:
            # resumed from a checkpoint of the retry (the process that hit the OOM was
            # stopped): the record is the checkpoint's micro-batch
            oom_retry = {"batch_size": progress.batch_size,
                         "grad_accumulation": progress.grad_accumulation}
        return model, progress, oom_retry


def attach_stream_head(job, cfg: TrainConfig, model, data: JobData) -> dict | None:
    """A text control: the model's masked-LM head (runner.ml.mlm.attach_mlm_head); its
    record (result.json ``control.mlm_head``), None for every other job."""
    if not data.stream:
        return None
    try:
        return attach_mlm_head(model, job.model_name)
    except (OSError, ValueError) as exc:
        raise JobFailed(f"text control: no masked-LM head for {job.model_name} "
                        f"({str(exc).splitlines()[0][:160]})") from None
