"""One job's config, resolved from the manifest: built-in defaults <- [defaults] <-
experiment, then shaped so that a job id changes only where the computation does
(runner.study.compat's job-id rules).  The dict this returns is what the plan hashes into
the job id and what result.json records; TrainConfig freezes it for the code below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from runner.study import compat
from runner.study.adapter import LoraSettings
from runner.study.config import HeldoutConfig
from runner.study.keys import (
    DEFAULT_WARMUP_CAP,
    DEFAULT_WARMUP_STEPS,
    HYPERPARAMETERS,
    MASK_PROBABILITY,
    SAMPLING_KEYS,
    TOKEN_TARGET_KEYS,
    WARMUP_KEYS,
)
from runner.study.strategies import STRATEGIES


class Manifest(Protocol):
    """What resolution reads of a parsed manifest (runner.study.manifest_types.Manifest)."""
    defaults: Mapping[str, Any]
    heldout: HeldoutConfig | None

    def evaluated_tasks(self) -> tuple[str, ...]: ...


class Experiment(Protocol):
    """What resolution reads of one experiment (runner.study.manifest_types.Experiment)."""
    strategy: str
    overrides: Mapping[str, Any]
    adapter: LoraSettings | None
    heldout: bool
    parity_target: str | None
    unreachable_parity: str | None
    control: str | None


def resolved_config(manifest: Manifest, exp: Experiment, tasks: tuple[str, ...]
                    ) -> dict[str, Any]:
    """Every hyperparameter of one job: defaults <- [defaults] <- experiment."""
    defaults = manifest.defaults
    if any(k in exp.overrides for k in WARMUP_KEYS):
        defaults = {k: v for k, v in defaults.items() if k not in WARMUP_KEYS}
    given = {**defaults, **exp.overrides}
    cfg: dict[str, Any] = {}
    for key, (_, default) in HYPERPARAMETERS.items():
        cfg[key] = given.get(key, default)
    compat.warmup_config(cfg, DEFAULT_WARMUP_STEPS, DEFAULT_WARMUP_CAP)
    strategy = STRATEGIES[exp.strategy]
    if cfg["batch_size"] is None:
        cfg["batch_size"] = strategy.batch_size
    caps = cfg["max_train_examples"]
    cfg["max_train_examples"] = {t: caps.get(t, caps.get("*")) for t in tasks
                                 if t in caps or "*" in caps}
    if not strategy.samples_tasks:
        # sampling means nothing for one task: kept neutral (rule neutral_sampling)
        compat.neutral_sampling(cfg, SAMPLING_KEYS,
                                {k: HYPERPARAMETERS[k][1] for k in SAMPLING_KEYS})
    # adapter_match experiments get theirs (rank matched) from runner.study.plan
    cfg["adapter"] = None if exp.adapter is None else exp.adapter.to_dict()
    if exp.heldout and manifest.heldout is not None:
        # only where asked: other jobs keep the config (and the job id) they had
        cfg["heldout"] = manifest.heldout.to_dict()
    vcaps = cfg.pop("max_validation_examples")
    vcaps = {t: vcaps.get(t, vcaps.get("*")) for t in tasks if t in vcaps or "*" in vcaps}
    if vcaps:   # none: the config (and job id) it had before
        cfg["max_validation_examples"] = vcaps
    lengths = compat.lengths_per_task(
        cfg["max_length"], cfg.pop("max_length_per_task"),
        tasks + tuple(cfg.get("heldout", {}).get("tasks", ())))
    if lengths is not None:
        cfg["max_length_per_task"] = lengths
    for key in TOKEN_TARGET_KEYS:
        del cfg[key]  # in token-controlled jobs only: the others keep their ids
    if strategy.token_target:
        _token_target_settings(cfg, exp, given)
    if given.get("decontaminate", False):   # off: the config (and job id) it had before
        from runner.data.contamination import DEFAULT_N
        cfg["decontaminate"] = {"n": DEFAULT_N, "against": list(manifest.evaluated_tasks())}
    return cfg


def _token_target_settings(cfg: dict[str, Any], exp: Experiment, given: dict) -> None:
    """A token-controlled job's own keys, in place: its epoch cap, parity target, what to do
    when the target is out of reach, and (the text control) its control block."""
    cfg["token_controlled_max_epochs"] = given.get(
        "token_controlled_max_epochs", HYPERPARAMETERS["token_controlled_max_epochs"][1])
    cfg["parity_target"] = exp.parity_target
    # what to do when the target is out of reach: not what a job computes once it runs, so
    # not in its id (runner.study.plan.NOT_IN_ID)
    cfg["unreachable_parity"] = exp.unreachable_parity or "skip"
    if exp.control == "text":   # the default ("repeat") keeps the config and job id
        # the rest of the block (the tasks, the multi-task job's settings) comes from the
        # referenced job, in runner.study.plan
        del cfg["token_controlled_max_epochs"]   # its task is seen as in the multi-task job
        cfg["control"] = {"kind": "text", "mask_probability": MASK_PROBABILITY}
