"""The training strategies, one entry each: what an experiment's ``strategy`` names, the
``experiment_type`` a job's result.json records for it (stats groups by it), and how an
experiment of it expands into jobs (``expand``, called by runner.study.plan.build_plan per seed
and model).  The one place a strategy's name is tied to its type and its jobs; adding a
strategy is one entry here (with its manifest keys in runner.study.manifest) plus its training
branch in runner.recipes.train_job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _a_job_per_task_set(builder, exp, seed: int, alias: str) -> list:
    """single_task (task sets of one task each) and multi_task: one job per task set."""
    return [builder.job(exp, seed, alias, task_set) for task_set in exp.task_sets]


def _a_job_per_task_of_the_reference(builder, exp, seed: int, alias: str) -> list:
    """token_controlled: for each task of each task set of the referenced multi-task
    experiment, one single-task job trained to that multi-task job's token count."""
    jobs = []
    for task_set in exp.task_sets:
        reference = builder.reference(exp.reference, seed, alias, task_set)
        jobs.extend(builder.job(exp, seed, alias, (task,), reference=reference)
                    for task in task_set)
    return jobs


@dataclass(frozen=True)
class Strategy:
    name: str
    experiment_type: str   # result.json's experiment_type
    description: str
    # (plan builder, experiment, seed, model alias) -> that seed and model's jobs, in order
    expand: Callable[[Any, Any, int, str], list]
    needs_reference: bool = False   # its jobs refer to another experiment's (built first)


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("single_task", "single_task_baseline", "one task per job", _a_job_per_task_set),
    Strategy("multi_task", "multi_task", "one shared encoder, a head per task, tasks sampled",
             _a_job_per_task_set),
    Strategy("token_controlled", "token_controlled_baseline",
             "one task per job, trained to the multi-task job's token count (parity)",
             _a_job_per_task_of_the_reference, needs_reference=True),
)}


def experiment_type(strategy: str) -> str:
    return STRATEGIES[strategy].experiment_type
