"""A job's training settings as one frozen value, read once at the edge.

The job's ``config`` dict stays what it is for its id (runner.study.plan) and its
result.json; a recipe turns it into a :class:`TrainConfig` with
:meth:`TrainConfig.from_dict` and everything below reads attributes.  The defaults are the
manifest's (runner.study.manifest.HYPERPARAMETERS), written in one place: a key a job's
config lacks (stand-in configs in tests, older jobs) takes that default.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from runner.study.manifest import HYPERPARAMETERS


def truncation_length(max_length: int, per_task: Mapping | None, task: str) -> int:
    """The length a job cuts ``task``'s examples at: the manifest's per-task table where it
    names the task (it only lowers), else ``max_length``.  The plan's design check reads the
    job's config dict with it; the engine a TrainConfig."""
    return int((per_task or {}).get(task, max_length))


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float             # AdamW's peak learning rate
    warmup_steps: int                # optimizer steps of linear warm-up
    weight_decay: float
    max_length: int                  # sub-tokens per example (the model's limit caps it)
    max_length_per_task: Mapping     # task -> sub-tokens, lowers max_length
    batch_size: int | None           # examples per micro-batch (the plan resolves None)
    grad_accumulation: int           # micro-batches per optimizer step
    max_epochs: int
    eval_every: int                  # optimizer steps between validations
    patience: int                    # validations without improvement before stopping
    min_delta: float                 # smallest validation improvement that counts
    max_train_examples: Mapping      # task -> training subset size
    max_eval_examples: int | None    # cap on validation and test examples
    checkpoint_every_s: float        # seconds between resumable checkpoints
    precision: str                   # auto | fp32 | fp16 | bf16
    sampling: str                    # multi-task: proportional | temperature | capped
    temperature: float | None
    examples_cap: int | None
    max_steps: int | None            # optimizer steps; demos and tests
    token_controlled_max_epochs: int
    compile: bool
    keep_weights: bool
    adapter: Mapping | None = None        # LoRA settings (RQ2), as LoraSettings.to_dict
    heldout: Mapping | None = None        # [heldout] settings (RQ2)
    decontaminate: Mapping | None = None  # {"n", "against", "data_checksums"}
    parity_target: str = "total"          # token_controlled: "total" | "best"
    # token_controlled, control = "text" only: {"kind", "mask_probability", "tasks": the
    # multi-task job's task set} (runner.ml.mlm); None: the repeat control
    control: Mapping | None = None

    def max_length_for(self, task: str) -> int:
        """``task``'s truncation length before the model's limit caps it."""
        return truncation_length(self.max_length, self.max_length_per_task, task)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> TrainConfig:
        """The job's config with every absent key at the manifest's default; keys that are
        not training settings (a result's target_tokens) are left out."""
        names, defaults = _names_and_defaults(cls)
        return cls(**{**defaults, **{k: v for k, v in config.items() if k in names}})


@functools.cache
def _names_and_defaults(cls) -> tuple[frozenset, dict[str, Any]]:
    """(field names, the manifest's defaults for them), once: the plan's design check reads
    every job's settings (10,000 jobs in a large study)."""
    names = frozenset(f.name for f in fields(cls))
    return names, {k: default for k, (_, default) in HYPERPARAMETERS.items() if k in names}
