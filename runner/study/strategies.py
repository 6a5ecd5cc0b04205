"""The training strategies, one entry each: what an experiment's ``strategy`` names, and the
``experiment_type`` a job's result.json records for it (stats groups by it).  The one place
a strategy's name is tied to its type; adding a strategy is one entry here plus its
expansion in runner.study.plan and its training branch in runner.recipes.train_job.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Strategy:
    name: str
    experiment_type: str   # result.json's experiment_type
    description: str


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("single_task", "single_task_baseline", "one task per job"),
    Strategy("multi_task", "multi_task", "one shared encoder, a head per task, tasks sampled"),
    Strategy("token_controlled", "token_controlled_baseline",
             "one task per job, trained to the multi-task job's token count (parity)"),
)}


def experiment_type(strategy: str) -> str:
    return STRATEGIES[strategy].experiment_type
