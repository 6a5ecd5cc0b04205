"""What a manifest may say, key by key: each table's keys with their value check and default.

The training defaults are :class:`~runner.study.config.TrainConfig`'s (it owns them); the
checks are runner.study.values'.  The parser (runner.study.parser) reads these tables; the
config resolution (runner.study.resolve) fills a job's settings from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from runner.data.tasks import HELD_OUT_TASKS
from runner.study.config import (
    DEFAULT_WARMUP_CAP,  # noqa: F401  (re-exported: the manifest's names for them)
    DEFAULT_WARMUP_STEPS,  # noqa: F401
    HeldoutConfig,
    TrainConfig,
)
from runner.study.sampling import SAMPLINGS
from runner.study.values import (
    boolean,
    choice,
    examples_per_task,
    integer,
    lengths_per_task,
    number,
    optional_integer,
)

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# the text-matched control's masked-LM stream: share of real, non-special tokens selected
# (BERT's 15%; of them 80% [MASK], 10% a random token, 10% unchanged)
MASK_PROBABILITY = 0.15
# [study] tracking: the backends of runner.observe.tracking (KNOWN_BACKENDS; a test keeps the
# two equal -- the study layer does not import the observe layer, which sits above it)
TRACKING_BACKENDS = ("tensorboard", "mlflow", "wandb")


def _with_defaults(checks: dict[str, Callable[[Any], Any]], defaults: dict[str, Any]
                   ) -> dict[str, tuple[Callable[[Any], Any], Any]]:
    """key -> (check, default); a table default is read-only (one object shared by jobs)."""
    def frozen(v):
        return MappingProxyType(v) if isinstance(v, dict) else v
    return {k: (check, frozen(defaults[k])) for k, check in checks.items()}


# name -> (check, default).  Defaults: TrainConfig's (the methodology's); batch_size None
# means "16 for single-task jobs, 8 for multi-task jobs" (the strategy's batch_size).
HYPERPARAMETERS: dict[str, tuple[Callable[[Any], Any], Any]] = _with_defaults({
    "learning_rate": number(0.0, 1.0, True),
    # optimizer steps of linear warm-up; None (the default): min(500, 10% of the job's planned
    # optimizer steps), the methodology's "500 -- ~10% of training" (runner.study.config)
    "warmup_steps": integer(0),
    # the alternative: this share of the job's planned optimizer steps (one of the two keys)
    "warmup_ratio": number(0.0, 1.0, False),
    "weight_decay": number(0.0, 1.0, False),
    "max_length": integer(8, 8192),              # tokens per example (model's limit caps)
    "max_length_per_task": lengths_per_task,     # lowers max_length for those tasks
    "batch_size": integer(1, 65536),             # examples per optimizer micro-batch
    "grad_accumulation": integer(1, 4096),
    "max_epochs": integer(1, 10000),
    "eval_every": integer(1),                    # optimizer steps between evaluations
    "patience": integer(1, 1000),                # evaluations without improvement
    "min_delta": number(0.0, 1.0, False),        # smallest improvement that counts
    "max_train_examples": examples_per_task,
    "max_eval_examples": optional_integer(1),    # cap on validation and test examples
    # per task (or one integer): a fixed, stratified subset of its VALIDATION split for model
    # selection and early stopping (runner.data.splits.validation_subset); tests untouched.
    # In a job's config (and id) only when it names one of the job's tasks
    "max_validation_examples": examples_per_task,
    "checkpoint_every_s": number(0.0, None, True),  # seconds
    "precision": choice(PRECISIONS),
    "sampling": choice(SAMPLINGS),
    "temperature": number(0.0, 1000.0, True),
    "examples_cap": optional_integer(1),
    "max_steps": optional_integer(1),            # optimizer steps; demos and tests
    # passes over its task after which a token-controlled job stops short of its target (the
    # methodology's "num_epochs": 20 for the token-controlled baseline); its jobs only
    "token_controlled_max_epochs": integer(1, 10000),
    # torch.compile the encoder (CUDA only; ignored on CPU): how, not what, so not in job ids
    "compile": boolean,
    # keep a finished job's best weights (checkpoints/best/) for `runner evaluate` (RQ3);
    # false deletes them once result.json is written (BERT-base: ~440 MB a job, and a Kaggle
    # session saves at most 20 GB).  What is kept, not what is computed: not in job ids.
    "keep_weights": boolean,
}, TrainConfig.defaults())

# RQ2 held-out evaluation ([heldout] table): key -> (check, default); HeldoutConfig's
# defaults, its tasks and seeds checked by the parser.
HELDOUT_TASKS = HELD_OUT_TASKS   # the registry's: every TaskSpec with held_out=True
HELDOUT_TRAIN_MODES = ("head", "head_and_adapter")
HELDOUT_KEYS: dict[str, tuple[Callable[[Any], Any], Any]] = _with_defaults({
    "max_steps": integer(1),                     # optimizer steps of the fresh head
    "max_train_examples": integer(1),            # training subset of the held-out task
    "max_eval_examples": optional_integer(1),    # cap on its validation and test examples
    "learning_rate": number(0.0, 1.0, True),     # a fresh head needs more than 2e-5
    "train_mode": choice(HELDOUT_TRAIN_MODES),
    "batch_size": integer(1, 65536),             # examples per step of the fresh head
}, HeldoutConfig(tasks=()).to_dict())
HELDOUT_DEFAULT_SEEDS = list(HeldoutConfig(tasks=()).seeds)

# The two ways to say the warm-up: one of them per table; an experiment's replaces [defaults]'s.
WARMUP_KEYS = ("warmup_steps", "warmup_ratio")
# Only strategies that sample between tasks take the sampling keys; only those that train to a
# token target take its epoch cap (runner.study.strategies: samples_tasks, token_target).
SAMPLING_KEYS = ("sampling", "temperature", "examples_cap")
TOKEN_TARGET_KEYS = ("token_controlled_max_epochs",)
# What data a job trains on, in [defaults] or per experiment; in a job's config (and id) only
# when on.  decontaminate: drop the training units that overlap (exact or 13-gram,
# runner.data.contamination) a validation or test unit of any task the study evaluates.
DATA_KEYS: dict[str, tuple[Callable[[Any], Any], Any]] = {"decontaminate": (boolean, False)}
# the hyperparameters and data keys in one table: what [defaults] and an experiment may set
SETTING_KEYS: Mapping[str, tuple[Callable[[Any], Any], Any]] = MappingProxyType(
    {**HYPERPARAMETERS, **DATA_KEYS})
