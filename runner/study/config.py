"""A job's training settings as one frozen value, read once at the edge.

The job's ``config`` dict stays what it is for its id (runner.study.plan) and its
result.json; the plan freezes it into a :class:`TrainConfig` once (``Job.settings``,
:meth:`TrainConfig.from_dict`) and everything below reads attributes.

``TrainConfig`` owns the defaults (the methodology's): the manifest's key table
(runner.study.keys.HYPERPARAMETERS) takes them from here, and a key a job's config lacks
(stand-in configs in tests, older jobs) takes its default.  Types are checked and coerced
once, at construction (an integer where a number is expected becomes a float; a wrong type
is an InputError naming ``config.<key>``), so code below never casts a setting again.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar

from runner.data.tasks.spec import METHODOLOGY_MAX_LENGTH
from runner.errors import InputError

# The default warm-up (neither warmup_steps nor warmup_ratio given): the methodology's 500
# optimizer steps, "~10% of training", never more than this share of the job's planned steps.
DEFAULT_WARMUP_STEPS, DEFAULT_WARMUP_CAP = 500, 0.1


def truncation_length(max_length: int, per_task: Mapping | None, task: str) -> int:
    """The length a job cuts ``task``'s examples at: the manifest's per-task table where it
    names the task (it only lowers), else ``max_length``.  The plan's design check reads the
    job's config dict with it; the engine a TrainConfig."""
    return int((per_task or {}).get(task, max_length))


# ------------------------------------------------------------------------------ coercion
def _bad(where: str, expected: str, value: Any) -> InputError:
    return InputError(None, f"expected {expected}, got {value!r}", where=where)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_int(value, where):
    if not _is_int(value):
        raise _bad(where, "an integer", value)
    return int(value)


def _as_float(value, where):
    if not (_is_int(value) or isinstance(value, float)):
        raise _bad(where, "a number", value)
    return float(value)


def _as_str(value, where):
    if not isinstance(value, str):
        raise _bad(where, "a string", value)
    return value


def _as_bool(value, where):
    if not isinstance(value, bool):
        raise _bad(where, "true or false", value)
    return value


def _as_mapping(value, where):
    if not isinstance(value, Mapping):
        raise _bad(where, "a table", value)
    return dict(value)   # the config's own copy: the job's config dict is never aliased


def _as_names(value, where):
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _bad(where, "a list of names", value)
    return tuple(value)


def _as_ints(value, where):
    if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
        raise _bad(where, "a list of integers", value)
    return tuple(int(v) for v in value)


# a field's annotation (without "| None") -> (the type a value already has when it needs no
# coercion, its coercion)
_COERCIONS = {"int": (int, _as_int), "float": (float, _as_float), "str": (str, _as_str),
              "bool": (bool, _as_bool), "Mapping": (None, _as_mapping),
              "tuple[str, ...]": (None, _as_names), "tuple[int, ...]": (None, _as_ints)}


@functools.cache
def _coercions(cls, prefix: str) -> tuple:
    """Per field of ``cls``: (name, its key path, optional, the type that needs nothing,
    coercion or a nested frozen config class), once per class: the plan freezes every job's
    config (10,000 jobs in a large study), so the common case is one type test a field."""
    out = []
    for f in fields(cls):
        kind = str(f.type)
        base = kind.removesuffix(" | None")
        nested = getattr(cls, "NESTED", {}).get(f.name)
        if nested is None and base not in _COERCIONS:
            raise TypeError(f"{cls.__name__}.{f.name}: no coercion for {kind!r}")
        exact, coerce = (None, nested) if nested is not None else _COERCIONS[base]
        out.append((f.name, f"{prefix}.{f.name}", kind != base, exact, coerce))
    return tuple(out)


def _coerce_fields(obj: Any, prefix: str) -> None:
    """Every field of the frozen dataclass ``obj`` as its annotation says, in place; a wrong
    type is an InputError naming ``<prefix>.<field>``."""
    values = obj.__dict__
    for name, where, optional, exact, coerce in _coercions(type(obj), prefix):
        value = values[name]
        if type(value) is exact:    # already right (bool is not int: type(), not isinstance)
            continue
        if value is None:
            if not optional:
                raise _bad(where, "a value", value)
            continue
        if isinstance(coerce, type):   # a nested frozen config, given as its table
            if isinstance(value, Mapping):
                value = coerce.from_dict(value, where)
            elif not isinstance(value, coerce):
                raise _bad(where, "a table", value)
        else:
            value = coerce(value, where)
        object.__setattr__(obj, name, value)


def _defaults(cls) -> dict[str, Any]:
    return {f.name: (f.default if f.default is not MISSING else f.default_factory())
            for f in fields(cls) if f.default is not MISSING or f.default_factory is not MISSING}


# ------------------------------------------------------------------------------- [heldout]
@dataclass(frozen=True)
class HeldoutConfig:
    """The manifest's ``[heldout]`` table (RQ2): a fresh head (and the adapter) trained for a
    fixed budget per held-out task and seed on a finished job's encoder."""
    tasks: tuple[str, ...]               # held-out task names
    seeds: tuple[int, ...] = (1,)
    max_steps: int = 200                 # optimizer steps of the fresh head
    max_train_examples: int = 1000       # training subset of the held-out task
    max_eval_examples: int | None = None  # cap on its validation and test examples
    learning_rate: float = 1e-3          # a fresh head needs more than 2e-5
    train_mode: str = "head"             # "head" | "head_and_adapter"
    # examples per step of the fresh head: one value for every job, so multi-task sources
    # (batch 8 by default) and single-task ones (16) get the same held-out budget
    batch_size: int = 16

    def __post_init__(self):
        _coerce_fields(self, "config.heldout")

    def to_dict(self) -> dict[str, Any]:
        """The job config's ``heldout`` block (JSON: lists, in the table's order)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], where: str = "config.heldout"
                  ) -> HeldoutConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - names)
        if unknown:
            raise InputError(None, f"unknown key(s) {', '.join(unknown)}", where=where)
        if "tasks" not in table:
            raise InputError(None, "missing key 'tasks'", where=where)
        return cls(**table)


# ----------------------------------------------------------------------------- TrainConfig
@dataclass(frozen=True)
class TrainConfig:
    """A job's training settings, defaults the methodology's (batch_size None: "16 for
    single-task jobs, 8 for multi-task jobs", which the plan resolves)."""
    learning_rate: float = 2e-5          # AdamW's peak learning rate
    # optimizer steps of linear warm-up; None: the default (see warmup_for)
    warmup_steps: int | None = None
    warmup_ratio: float | None = None    # ... or this share of the planned steps
    weight_decay: float = 0.01
    max_length: int = METHODOLOGY_MAX_LENGTH  # sub-tokens per example (the model's limit caps)
    # task -> sub-tokens, lowers max_length
    max_length_per_task: Mapping = field(default_factory=dict)
    batch_size: int | None = None        # examples per micro-batch (the plan resolves None)
    grad_accumulation: int = 1           # micro-batches per optimizer step
    max_epochs: int = 10
    eval_every: int = 250                # optimizer steps between validations
    patience: int = 3                    # validations without improvement before stopping
    min_delta: float = 1e-4              # smallest validation improvement that counts
    max_train_examples: Mapping = field(default_factory=dict)   # task -> training subset
    max_eval_examples: int | None = None  # cap on validation and test examples
    checkpoint_every_s: float = 300.0    # seconds between resumable checkpoints
    precision: str = "auto"              # auto | fp32 | fp16 | bf16
    sampling: str = "proportional"       # multi-task: proportional | temperature | capped
    temperature: float | None = 1.0
    examples_cap: int | None = None
    max_steps: int | None = None         # optimizer steps; demos and tests
    # passes over its task after which a token-controlled job stops short of its target (the
    # methodology's "num_epochs": 20 for the token-controlled baseline)
    token_controlled_max_epochs: int = 20
    compile: bool = False                # torch.compile the encoder (CUDA only)
    keep_weights: bool = True            # keep checkpoints/best/ once result.json is written
    adapter: Mapping | None = None       # LoRA settings (RQ2), as LoraSettings.to_dict
    heldout: HeldoutConfig | None = None  # [heldout] settings (RQ2)
    decontaminate: Mapping | None = None  # {"n", "against", "data_checksums"}
    parity_target: str = "total"         # token_controlled: "total" | "best"
    # token_controlled, control = "text" only: {"kind", "mask_probability", "tasks": the
    # multi-task job's task set} (runner.ml.mlm); None: the repeat control
    control: Mapping | None = None
    warmup_cap: float | None = None      # the default warm-up's cap: share of planned steps
    unreachable_parity: str = "run"      # token_controlled: "skip" | "run"
    # task -> a fixed, stratified validation subset (model selection, early stopping)
    max_validation_examples: Mapping = field(default_factory=dict)
    # fields given as a table and frozen into their own config
    NESTED: ClassVar[dict[str, type]] = {"heldout": HeldoutConfig}

    def __post_init__(self):
        _coerce_fields(self, "config")

    def warmup_for(self, total_steps: int) -> tuple[int, str]:
        """(optimizer steps of linear warm-up, the rule that set them) for a job that plans
        ``total_steps``: ``warmup_ratio`` -> ceil(ratio x steps) (as transformers rounds it);
        ``warmup_steps`` with the default's ``warmup_cap`` -> min(steps, floor(cap x steps));
        ``warmup_steps`` alone -> that many (also a config from before the cap, which
        computes what it did then); neither (a stand-in config) -> the default."""
        total = max(0, int(total_steps))
        if self.warmup_ratio is not None:
            return math.ceil(self.warmup_ratio * total), "warmup_ratio"
        if self.warmup_steps is None:
            return _capped(DEFAULT_WARMUP_STEPS, DEFAULT_WARMUP_CAP, total), "default"
        if self.warmup_cap is not None:
            return _capped(self.warmup_steps, self.warmup_cap, total), "default"
        return self.warmup_steps, "warmup_steps"

    def max_length_for(self, task: str) -> int:
        """``task``'s truncation length before the model's limit caps it."""
        return truncation_length(self.max_length, self.max_length_per_task, task)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every setting's default (a fresh copy: the mappings are the caller's)."""
        return _defaults(cls)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> TrainConfig:
        """The job's config with every absent key at its default; keys that are not training
        settings (a result's target_tokens) are left out."""
        names = _names(cls)
        return cls(**{k: v for k, v in config.items() if k in names})


def _capped(steps: int, cap: float, total: int) -> int:
    # floor: "never more than cap x total"; the epsilon keeps 0.1 x 40 at 4, not 3
    return min(steps, math.floor(cap * total + 1e-9))


def peak_lr_factor(warmup: int, total: int) -> float:
    """The highest learning-rate factor the linear warm-up/decay schedule reaches over the
    optimizer steps 0 .. total-1 (runner.ml.train.linear_warmup_decay): 1 once the warm-up
    ends within the job, else (total - 1) / warmup, the last step's."""
    if total <= 0:
        return 0.0
    if warmup < total:
        return 1.0
    return (total - 1) / warmup


@functools.cache
def _names(cls) -> frozenset:
    """The field names, once: the plan's design check reads every job's settings (10,000
    jobs in a large study)."""
    return frozenset(f.name for f in fields(cls))
