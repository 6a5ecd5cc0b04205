"""The one training loop: single_task, multi_task and token_controlled jobs.

Read top to bottom:

1. Restore the newest intact checkpoint, or start from step 0.
2. Each optimizer step feeds ``grad_accumulation`` micro-batches.  A micro-batch's task comes
   from the :class:`TaskSampler` (always the one task outside multi_task); its examples are the
   next entry of that task's length-grouped epoch plan (``positions[task]`` = epoch, index).
   Token-controlled jobs trim the batch that would overshoot the target.  A text-matched
   control (``setup.stream``, runner.ml.mlm) samples over its multi-task job's tasks exactly as
   that job does; its own task's batches train its head, the others' train the encoder's
   masked-LM head on their text (masks drawn from torch's generator, saved with the RNG).
   The real tokens of each batch (attention-mask sum) are added to the task's counter right
   where the batch is fed.
   Dropout draws its masks as the job's progress says (``model.use_dropout``).
3. Every ``eval_every`` steps: validate (mean of the tasks' primary metrics), best weights
   (an exact tie of the score is broken by the lower mean validation loss), early stopping
   (patience, min_delta; not for token_controlled, which keeps its best weights apart, in
   ``validation_best/``), checkpoint.  Also checkpoint every ``checkpoint_every_s`` seconds,
   and when ``ctx.should_stop()`` -> JobInterrupted.
4. End: single/multi -- stopped early, or ran ``max_epochs`` (``max_steps``); token_controlled --
   the token target is reached, or ``token_controlled_max_epochs`` passes over its task are
   done (the job finishes short of its target; the caller records the shortfall).  A final
   validation (if the last step was not evaluated), the final checkpoint (``finished``), and
   the caller tests the best weights (token_controlled: the final ones, then the best ones).

Nothing here depends on wall-clock time except *when* checkpoints are written, so a resumed job
computes exactly what the uninterrupted one does (on CPU, bit for bit).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runner.jobapi import JobFailed, JobInterrupted
from runner.ml import checkpoint as ckpt
from runner.ml.batching import BATCH_ORDER, IGNORE_INDEX, EncodedSplit, collate, epoch_plan
from runner.ml.inference import predict
from runner.ml.mlm import mask_tokens, mlm_loss
from runner.ml.model import DROPOUT, use_dropout
from runner.ml.runtime import autocast, cuda_native_bf16, to_device
from runner.study.compat import predates_per_task_history
from runner.study.config import TrainConfig
from runner.study.sampling import TaskSampler
from runner.study.strategies import STRATEGIES, Strategy

MAX_GRAD_NORM = 1.0                      # gradient clipping, as Hugging Face's Trainer default
# token_controlled: the best validation weights, under checkpoints/ (best/ holds the final ones,
# which the job is tested with, as the methodology says; these are tested second)
BEST_VALIDATION_DIR = "validation_best"


@dataclass
class TrainTask:
    spec: Any
    train: EncodedSplit
    validation: EncodedSplit
    validation_df: Any  # pandas.DataFrame: the split evaluate() scores


@dataclass(kw_only=True)
class TrainSetup:
    """What one run of the loop trains: built by keyword (runner.recipes.train_job, the
    held-out heads of runner.recipes.heldout)."""
    strategy: str                      # a name of runner.study.strategies.STRATEGIES
    tasks: dict[str, TrainTask]
    config: TrainConfig
    seed: int
    device: torch.device
    pad_id: int
    ckpt_root: Path
    metrics_fn: Callable               # runner.ml.metrics.evaluate(spec, df, preds)
    batch_size: int
    grad_accumulation: int
    target_tokens: int | None = None   # token_controlled only
    # experiment tracking: called once after the restore with the restored optimizer step
    # (0 on a fresh start); returns a runner.observe.tracking.Tracker (or None)
    open_tracker: Callable[[int], Any] | None = None
    # text-matched control (runner.ml.mlm): the other tasks' training text, the sampling order
    # of the multi-task job's whole task set, and the masking (runner.ml.mlm.MaskSpec)
    stream: dict[str, EncodedSplit] | None = None
    stream_order: tuple[str, ...] = ()
    mask: Any = None

    @property
    def flags(self) -> Strategy:
        """The strategy's entry (runner.study.strategies): the loop asks its flags
        (token_target, early_stopping, test_weights), never its name."""
        return STRATEGIES[self.strategy]

    def train_split(self, task: str) -> EncodedSplit:
        """``task``'s training split: the job's own task, or a masked-LM stream task."""
        return self.tasks[task].train if task in self.tasks else self.stream[task]

    def sampled_tasks(self) -> tuple[str, ...]:
        """The tasks the sampler draws from, in its order (a text control: the multi-task
        job's set, as that job orders it)."""
        return self.stream_order if self.stream else tuple(self.tasks)


# --------------------------------------------------------------------------------- precision
def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None = fp32.  "auto": bf16 where the GPU has it in hardware (A100, H100), else fp16
    (T4, P100); fp32 on CPU."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    return torch.bfloat16 if cuda_native_bf16() else torch.float16


def loss_scaling(dtype: torch.dtype | None) -> bool:
    """fp16's narrow exponent underflows small gradients: it trains with a grad scaler; bf16
    (float32's exponent) and fp32 need none."""
    return dtype is torch.float16


def make_grad_scaler(device: torch.device, enabled: bool):
    """fp16 loss scaling (a no-op object when disabled); torch < 2.3 has only the CUDA one."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled and device.type == "cuda")


def eval_batch_size(batch_size: int) -> int:
    return max(32, 2 * batch_size)


def _score(value) -> float:
    """Comparable validation score: NaN (e.g. Pearson of constant predictions) never wins."""
    return -math.inf if value is None or not math.isfinite(value) else float(value)


def _mean_loss(metrics: dict) -> float:
    """Mean validation loss over the tasks (NaN-free losses only; inf when there are none)."""
    losses = [m["loss"] for m in metrics.values() if math.isfinite(m.get("loss", math.nan))]
    return float(np.mean(losses)) if losses else math.inf


def _ties_with_lower_loss(score: float, loss: float, progress: ckpt.TrainingProgress) -> bool:
    """A score exactly equal to the best one (typically a plateau: NER F1 0.0 while the model
    still predicts only O) counts as an improvement when the validation loss is lower.  Without
    this, a run whose F1 starts late keeps its first evaluation's weights as "best" and stops
    after ``patience`` evaluations although it is still learning."""
    if progress.best_score is None or score != progress.best_score:
        return False
    best = next((h for h in progress.validation_history if h["step"] == progress.best_step),
                None)
    return best is not None and loss < _mean_loss(best["metrics"])


def validate(model, setup: TrainSetup, dtype) -> tuple[dict, float]:
    """Validation metrics per task and the early-stopping score (mean of primary metrics)."""
    metrics, primaries = {}, []
    for name, t in setup.tasks.items():
        preds, loss = predict(model, t.spec, t.validation, setup.pad_id, setup.device, dtype,
                              eval_batch_size(setup.batch_size))
        m, _ = setup.metrics_fn(t.spec, t.validation_df, preds)
        m = {k: float(v) for k, v in m.items()}
        m["loss"] = float(loss)
        metrics[name] = m
        primaries.append(m[t.spec.primary_metric])
    return metrics, float(np.mean(primaries))


# --------------------------------------------------------------------------------- planning
def batches_per_epoch(split: EncodedSplit, batch_size: int) -> int:
    return math.ceil(len(split) / batch_size)


def epoch_cap(config: TrainConfig) -> int:
    """Passes over its task after which a token-controlled job stops short of its target."""
    return config.token_controlled_max_epochs


def epochs_needed(target_tokens: int, split: EncodedSplit) -> float:
    """Passes over ``split`` that hold ``target_tokens`` real tokens."""
    return target_tokens / max(1, int(split.lengths.sum()))


def best_validation_root(ckpt_root: Path) -> Path:
    """Where a token-controlled job keeps its best validation weights (``<here>/best/``)."""
    return Path(ckpt_root) / BEST_VALIDATION_DIR


def plan_total_steps(setup: TrainSetup, batch_size: int, accumulation: int) -> int:
    """Optimizer steps the linear schedule decays over (token_controlled: to its target, or to
    its epoch cap where the target lies beyond it; a text control: as its multi-task job)."""
    cfg = setup.config
    if setup.flags.token_target and not setup.stream:
        (t,) = setup.tasks.values()
        epochs = min(epochs_needed(setup.target_tokens, t.train), epoch_cap(cfg))
        micro = math.ceil(epochs * batches_per_epoch(t.train, batch_size))
    elif cfg.max_steps:
        return cfg.max_steps
    else:   # a text control: its multi-task job's schedule (the same learning rate a step)
        micro = cfg.max_epochs * sum(batches_per_epoch(setup.train_split(t), batch_size)
                                          for t in setup.sampled_tasks())
    return max(1, math.ceil(micro / accumulation))


def new_progress(setup: TrainSetup) -> ckpt.TrainingProgress:
    names = list(setup.sampled_tasks())
    return ckpt.TrainingProgress(
        strategy=setup.strategy, tasks=list(setup.tasks), batch_size=setup.batch_size,
        grad_accumulation=setup.grad_accumulation,
        total_steps=plan_total_steps(setup, setup.batch_size, setup.grad_accumulation),
        target_tokens=setup.target_tokens,
        positions={t: {"epoch": 0, "index": 0} for t in names},
        tokens_per_task={t: 0 for t in names}, examples_per_task={t: 0 for t in names},
        batches_per_task={t: 0 for t in names}, batch_order=BATCH_ORDER,
        dropout=DROPOUT, masked_per_task={t: 0 for t in setup.stream or ()})


def linear_warmup_decay(step: int, warmup: int, total: int) -> float:
    """transformers' ``get_linear_schedule_with_warmup`` factor, written out: importing that
    module imports peft and, through it, bitsandbytes (slow; a kernel warning on some CPUs)."""
    if step < warmup:
        return float(step) / float(max(1, warmup))
    return max(0.0, float(total - step) / float(max(1, total - warmup)))


def make_optimizer(model, cfg: TrainConfig, device: torch.device, total_steps: int):
    import functools

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # biases and LayerNorm weights are not decayed (as in BERT and the HF Trainer)
        (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    try:
        # fused: one kernel for all parameters (CUDA; CPU since torch 2.4: ~6x faster there)
        optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=True)
    except (RuntimeError, TypeError):
        optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate)
    warmup, _ = cfg.warmup_for(total_steps)   # the rule's steps for this job's plan
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(
        linear_warmup_decay, warmup=warmup, total=total_steps))
    return optimizer, scheduler


# --------------------------------------------------------------------------------- the loop
def train(model, setup: TrainSetup, ctx) -> ckpt.TrainingProgress:
    """Train ``model`` on ``setup`` from its latest checkpoint (if any) to the end of its
    budget; the progress it returns is what result.json reports.

    The loop reads top to bottom -- sample and step, report, validate and checkpoint, stop --
    and the order of these calls is the order of the RNG draws and saves that exact resume
    depends on: keep it here, in one place."""
    run = _open_run(model, setup, ctx)
    while not run.training_done():
        model.train()
        loss_sum_before, micro_before = run.progress.train_loss_sum, run.progress.micro_steps
        run.feed_micro_batches()                        # forward, backward, count the tokens
        run.optimizer_step()                            # clip, step, schedule
        run.report_step(loss_sum_before, micro_before)  # heartbeat, tracking
        saved = run.validate_and_checkpoint()
        run.stop_if_asked(saved)                        # ctx.should_stop() -> JobInterrupted
    run.finish()
    return run.progress


@dataclass
class _Run:
    """The state :func:`train`'s loop carries from one optimizer step to the next."""
    model: Any
    setup: TrainSetup
    ctx: Any
    dtype: torch.dtype | None            # autocast_dtype(); None = fp32
    scaler: Any                          # make_grad_scaler()
    optimizer: Any
    scheduler: Any
    progress: ckpt.TrainingProgress
    sampler: TaskSampler
    tracker: Any                         # runner.observe.tracking.Tracker, or None
    best_root: Path                      # where the best validation weights go
    total_examples: int                  # of all tasks' training splits
    cap_examples: int                    # a token target: epoch_cap passes over its task
    segment_start: float                 # time.monotonic() that train_seconds counts from
    last_save: float                     # time.monotonic() that checkpoint_every_s counts from
    last_eval_step: int | None
    plans: dict[tuple[str, int], list] = field(default_factory=dict)  # (task, epoch) -> batches

    @property
    def token_target(self) -> bool:
        """Trains to a token target: the schedule, the last batch and the end follow it."""
        return self.setup.flags.token_target

    def next_indices(self, task: str) -> np.ndarray:
        """The examples of ``task``'s next batch: the next entry of its epoch plan."""
        pos = self.progress.positions[task]
        plan = self.plans.get((task, pos["epoch"]))
        if plan is None:
            self.plans.clear()  # one epoch per task is all that is ever needed again
            plan = epoch_plan(self.setup.train_split(task).lengths, self.progress.batch_size,
                              self.setup.seed, task, pos["epoch"], self.progress.batch_order)
            self.plans[(task, pos["epoch"])] = plan
        if pos["index"] >= len(plan):
            pos["epoch"] += 1
            pos["index"] = 0
            return self.next_indices(task)
        pos["index"] += 1
        return plan[pos["index"] - 1]

    def epochs_done(self) -> float:
        return sum(self.progress.examples_per_task.values()) / self.total_examples

    def training_done(self) -> bool:
        progress = self.progress
        if progress.finished or progress.stopped_early:
            return True
        if self.token_target:
            # a text control replays its multi-task job: no epoch cap, it reaches the target
            return progress.token_count >= progress.target_tokens or (
                not self.setup.stream
                and sum(progress.examples_per_task.values()) >= self.cap_examples)
        return progress.step >= progress.total_steps

    def feed_micro_batches(self) -> None:
        """Forward and backward ``grad_accumulation`` micro-batches (token_controlled: fewer
        where the target is reached), each counted right where it is fed."""
        progress, setup = self.progress, self.setup
        accumulation = progress.grad_accumulation
        for _ in range(accumulation):
            task = self.sampler.next_task()
            indices = self.next_indices(task)
            split = setup.train_split(task)
            if self.token_target:
                kept = trim_to_target(indices, split.lengths,
                                      progress.target_tokens - progress.token_count)
                progress.trimmed_examples += len(indices) - len(kept)
                indices = kept
            batch = collate(split, indices, setup.pad_id)
            loss = self.forward(task, batch)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise JobFailed(f"{task}: loss is {loss_value} at step {progress.step + 1} "
                                f"(lr {self.scheduler.get_last_lr()[0]:.2e})")
            self.scaler.scale(loss / accumulation).backward()
            # the count: real tokens of exactly what the model was just fed
            progress.tokens_per_task[task] += batch.n_tokens
            progress.examples_per_task[task] += batch.n_examples
            progress.batches_per_task[task] += 1
            progress.micro_steps += 1
            progress.train_loss_sum += loss_value
            if self.token_target and self.training_done():
                break

    def forward(self, task: str, batch) -> torch.Tensor:
        """The micro-batch's loss: its task head's, or (a text control's stream task) the
        masked-LM head's on its text, labels unused."""
        setup = self.setup
        if task in setup.tasks:
            with autocast(setup.device, self.dtype):
                loss, _ = self.model(task, **to_device(batch.tensors, setup.device))
            return loss
        tensors = {k: v for k, v in batch.tensors.items() if k != "labels"}
        tensors["input_ids"], tensors["labels"] = mask_tokens(
            tensors["input_ids"], tensors["attention_mask"], setup.mask)
        self.progress.masked_per_task[task] += int((tensors["labels"] != IGNORE_INDEX).sum())
        with autocast(setup.device, self.dtype):
            loss = mlm_loss(self.model, **to_device(tensors, setup.device))
        self.progress.mlm_loss_sum += float(loss.detach())
        return loss

    def optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), MAX_GRAD_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.step += 1

    def report_step(self, loss_sum_before: float, micro_before: int) -> None:
        """Heartbeat and tracking of the step just taken (its mean loss: the micro-batches'
        since ``loss_sum_before`` and ``micro_before``)."""
        progress = self.progress
        self.ctx.heartbeat({"phase": "train", "step": progress.step,
                            "total_steps": progress.total_steps, "tokens": progress.token_count,
                            "target_tokens": progress.target_tokens,
                            "epoch": self.epochs_done()})
        if self.tracker:
            micro = progress.micro_steps - micro_before
            self.tracker.log_scalars(progress.step, {
                "train/loss": (progress.train_loss_sum - loss_sum_before) / max(1, micro),
                "train/lr": self.scheduler.get_last_lr()[0],
                "train/tokens_total": progress.token_count,   # not train/tokens: MLflow's
                # file store keeps a metric per file, and train/tokens/<task> needs a folder
                **{f"train/tokens/{t}": n for t, n in progress.tokens_per_task.items()},
                "train/epoch": self.epochs_done()})

    def validate_and_checkpoint(self) -> bool:
        """Every ``eval_every`` steps: validate and checkpoint; also checkpoint every
        ``checkpoint_every_s`` seconds.  True when a checkpoint was written."""
        progress, cfg = self.progress, self.setup.config
        eval_every = cfg.eval_every
        if progress.step % eval_every == 0:
            self.run_validation()
            self.last_eval_step = progress.step
        due = progress.step % eval_every == 0 or \
            time.monotonic() - self.last_save >= cfg.checkpoint_every_s
        if due and not self.training_done():  # a finished loop saves once, in finish()
            self.save()
            self.last_save = time.monotonic()
            return True
        return False

    def stop_if_asked(self, saved: bool) -> None:
        """``ctx.should_stop()`` (asked only while training goes on): checkpoint, unless this
        step already did, and raise JobInterrupted."""
        if not self.training_done() and self.ctx.should_stop():
            if not saved:
                self.save()
            raise JobInterrupted(f"stopped at step {self.progress.step}; run again to resume")

    def run_validation(self) -> None:
        """Validate, record it, keep the best weights, count towards early stopping."""
        progress, cfg = self.progress, self.setup.config
        metrics, score = validate(self.model, self.setup, self.dtype)
        entry = {"step": progress.step, "tokens": progress.token_count,
                 "tokens_per_task": {t: int(n) for t, n in progress.tokens_per_task.items()},
                 "epoch": round(self.epochs_done(), 4), "metrics": metrics, "score": score}
        progress.validation_history.append(entry)
        if self.tracker:
            self.tracker.log_scalars(progress.step, {"val": metrics, "val/score": score})
        best = -math.inf if progress.best_score is None else progress.best_score
        loss = _mean_loss(metrics)
        improved = _score(score) > best + cfg.min_delta or _ties_with_lower_loss(
            _score(score), loss, progress)
        if improved:
            progress.best_score, progress.best_step = _score(score), progress.step
            progress.evals_without_improvement = 0
            self.ctx.check_owner()   # fenced: only the job's owner writes its state
            ckpt.save_best(self.best_root, self.model, {"step": progress.step, "score": score})
        elif self.setup.flags.early_stopping:   # (a token target: runs to its target)
            progress.evals_without_improvement += 1
            if progress.evals_without_improvement >= cfg.patience:
                progress.stopped_early = True
        self.ctx.logger.info(
            "step %d epoch %.2f tokens %d: validation score %.4f%s%s", progress.step,
            entry["epoch"], progress.token_count, score, " (best)" if improved else "",
            " -> early stop" if progress.stopped_early else "")

    def save(self) -> None:
        now = time.monotonic()
        self.progress.train_seconds += now - self.segment_start
        self.segment_start = now
        self.progress.sampler_state = self.sampler.state_dict()
        if self.tracker:
            # every step logged so far reaches the trackers' files before the checkpoint a
            # resumed job starts after exists: the resumed job logs only later steps
            self.tracker.flush()
        self.ctx.check_owner()   # fenced: JobLost once another worker owns the job
        ckpt.save_checkpoint(self.setup.ckpt_root, self.progress, self.model, self.optimizer,
                             self.scheduler, self.scaler)

    def finish(self) -> None:
        """Validate the final weights (if the last step was not), choose the weights tested,
        write the final checkpoint (``finished``); a run restored finished does nothing."""
        progress, setup, model = self.progress, self.setup, self.model
        if progress.finished:
            return
        self.ctx.check_owner()
        if self.last_eval_step != progress.step:  # the final weights are validated too
            self.run_validation()
        if progress.best_step is None:  # no finite validation score: the final weights
            ckpt.save_best(self.best_root, model, {"step": progress.step, "score": None})
            progress.best_step = progress.step
        if setup.flags.test_weights == "final":   # tested first (token_controlled's rule)
            ckpt.save_best(setup.ckpt_root, model, {"step": progress.step, "score": None})
        progress.finished = True
        self.save()


def _open_run(model, setup: TrainSetup, ctx) -> _Run:
    """Restore the newest intact checkpoint into ``model`` (or start from step 0) and build
    the loop's state: optimizer, scheduler, grad scaler, RNG, tracker, task sampler."""
    cfg, log, device = setup.config, ctx.logger, setup.device
    dtype = autocast_dtype(cfg.precision, device)
    scaler = make_grad_scaler(device, enabled=loss_scaling(dtype))
    # where the best validation weights go: best/ (tested first), or apart where the final
    # weights are tested first
    best_root = best_validation_root(setup.ckpt_root) \
        if setup.flags.test_weights == "final" else setup.ckpt_root
    restored = _load_resumable(setup, log)
    if restored is not None:
        path, progress, model_state, optim_state, rng_state = restored
        model.load_state_dict(model_state)
        # the micro-batch the job trained with (halved after a CUDA OOM; runner.recipes'
        # train_with_oom_retry): validation batches of a resumed job are the uninterrupted one's
        setup = replace(setup, batch_size=progress.batch_size,
                        grad_accumulation=progress.grad_accumulation)
    else:
        progress = new_progress(setup)
    use_dropout(model, progress.dropout)  # the job's own, whichever version started it
    model.to(device)
    optimizer, scheduler = make_optimizer(model, cfg, device, progress.total_steps)
    if restored is not None:
        optimizer.load_state_dict(optim_state["optimizer"])
        scheduler.load_state_dict(optim_state["scheduler"])
        scaler.load_state_dict(optim_state["scaler"])
        ckpt.restore_rng(rng_state)
        log.info("resumed from %s: step %d, %d tokens", path.name, progress.step,
                 progress.token_count)
    # tracking: plain bookkeeping on numbers the loop has anyway (no RNG draw, no sync)
    tracker = setup.open_tracker(progress.step if restored is not None else 0) \
        if setup.open_tracker is not None else None

    sizes = {name: len(setup.train_split(name)) for name in setup.sampled_tasks()}
    sampler = TaskSampler(sizes, setup.seed, cfg.sampling, cfg.temperature or 1.0,
                          cfg.examples_cap)
    if progress.sampler_state is not None:
        sampler.load_state_dict(progress.sampler_state)
    total_examples = sum(sizes.values())
    return _Run(model, setup, ctx, dtype, scaler, optimizer, scheduler, progress, sampler,
                tracker, best_root, total_examples,
                cap_examples=epoch_cap(cfg) * total_examples,  # a token target: its one task
                segment_start=time.monotonic(), last_save=time.monotonic(),
                last_eval_step=(progress.validation_history[-1]["step"]
                                if progress.validation_history else None))


def _load_resumable(setup: TrainSetup, log):
    """``ckpt.load_latest_checkpoint``'s answer, or None where that checkpoint cannot be
    resumed exactly (it predates tokens per task in the validation history: the job is
    restarted from scratch)."""
    # another job's checkpoint is corrupt here: skipped for an older one, or a fresh start
    restored = ckpt.load_latest_checkpoint(setup.ckpt_root, log, strategy=setup.strategy,
                                           tasks=list(setup.tasks))
    if restored is not None and predates_per_task_history(restored[1].validation_history):
        log.warning("checkpoint %s was written before validation recorded tokens per task "
                    "(needed for tokens_per_task_at_best); restarting the job from scratch",
                    restored[0])
        shutil.rmtree(setup.ckpt_root, ignore_errors=True)
        return None
    return restored


def tokens_at_best(progress: ckpt.TrainingProgress) -> tuple[int, dict[str, int]]:
    """Real training tokens (all tasks, per task) when the best validation weights were taken;
    the final counts where no validation chose any."""
    entry = next((h for h in progress.validation_history if h["step"] == progress.best_step),
                 None)
    if entry is None:
        return progress.token_count, {t: int(n) for t, n in progress.tokens_per_task.items()}
    return int(entry["tokens"]), {t: int(n) for t, n in entry["tokens_per_task"].items()}


def trim_to_target(indices: np.ndarray, lengths: np.ndarray, remaining: int) -> np.ndarray:
    """The batch's first k examples, k chosen so their tokens land as close as possible to the
    ``remaining`` tokens (so the final count is within one example of the target)."""
    cumulative = np.cumsum(lengths[indices])
    if cumulative[-1] <= remaining:
        return indices
    k = int(np.searchsorted(cumulative, remaining, side="right"))  # tokens(k) <= remaining
    over = int(cumulative[k]) - remaining                          # taking one more overshoots
    under = remaining - (int(cumulative[k - 1]) if k > 0 else 0)
    if over < under or k == 0:
        k += 1
    return indices[:k]
