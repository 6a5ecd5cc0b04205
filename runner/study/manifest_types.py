"""What a parsed manifest is: frozen dataclasses, built once by runner.study.parser.

Code below the parser reads these (and the job configs the plan resolves from them), never a
raw TOML dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.study.adapter import LoraSettings
from runner.study.config import HeldoutConfig
from runner.study.resolve import resolved_config
from runner.study.strategies import experiment_type
from runner.study.values import known_tasks


@dataclass(frozen=True)
class Study:
    name: str
    results: str          # folder of the study's results (relative to the working folder)
    seeds: tuple[int, ...]
    results_line: int | None = None   # where `results` is set, for errors about that folder
    # experiment-tracking backends (runner.observe.tracking); not part of any job's identity
    tracking: tuple[str, ...] = ()


@dataclass(frozen=True)
class Experiment:
    name: str
    strategy: str                           # single_task | multi_task | token_controlled
    models: tuple[str, ...]                 # aliases; token_controlled: the reference's
    task_sets: tuple[tuple[str, ...], ...]  # one job per set (single_task: 1-task sets)
    reference: str | None                   # token_controlled: a multi_task experiment
    parity: str | None                      # token_controlled: "total" | "per_task"
    overrides: Mapping[str, Any]            # validated hyperparameters for this experiment
    line: int | None = None
    adapter: LoraSettings | None = None     # own table, else [defaults]'s
    adapter_match: str | None = None        # single_task: multi_task experiment to match
    heldout: bool = False                   # evaluate on the [heldout] tasks after the job
    parity_target: str | None = None        # token_controlled: "total" | "best"
    control: str | None = None              # token_controlled: "repeat" | "text"
    unreachable_parity: str | None = None   # token_controlled: "skip" | "run"

    @property
    def experiment_type(self) -> str:
        return experiment_type(self.strategy)


@dataclass(frozen=True)
class Manifest:
    path: str
    study: Study
    defaults: Mapping[str, Any]   # validated [defaults] (only the keys that were given)
    models: Mapping[str, str]     # [models] aliases added by this manifest
    experiments: tuple[Experiment, ...]
    heldout: HeldoutConfig | None = None  # the [heldout] table, resolved

    def experiment(self, name: str) -> Experiment:
        for exp in self.experiments:
            if exp.name == name:
                return exp
        raise KeyError(name)

    def evaluated_tasks(self) -> tuple[str, ...]:
        """Every task the study evaluates (its experiments' and its [heldout] tasks), in the
        registry's order."""
        named = {t for e in self.experiments for ts in e.task_sets for t in ts}
        named.update(self.heldout.tasks if self.heldout is not None else ())
        return tuple(t for t in known_tasks() if t in named)

    def resolved_config(self, exp: Experiment, tasks: tuple[str, ...]) -> dict[str, Any]:
        """Every hyperparameter of one job: defaults <- [defaults] <- experiment
        (runner.study.resolve)."""
        return resolved_config(self, exp, tasks)
