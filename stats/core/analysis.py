"""From the loaded study to its comparisons: every system's summary, RQ1's multi-task
families and RQ5's token-controlled families, computed once for every section.

Everything returned is plain dicts/lists (what statistics.json stores); ``None`` plus a
``reason`` marks what is not applicable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mtl_contract.schema import MT, ST, TC
from stats.core.multitask import multitask_comparisons
from stats.core.study import Study
from stats.core.systems import system_summary
from stats.core.token_controlled import rq5_groups


@dataclass
class Analysis:
    """What the core sections compute once and later sections may reuse."""

    systems: list[dict[str, Any]]
    multitask: list[dict[str, Any]]
    rq5: list[dict[str, Any]]


def analyse(study: Study, bootstrap: bool = True) -> Analysis:
    systems = []
    for model in study.models():
        for strategy in (ST, MT, TC):
            for exp in study.experiments(model, strategy):
                for task in study.tasks_of(model, strategy, exp):
                    systems.append(system_summary(study, model, strategy, exp, task, bootstrap))
    multitask = multitask_comparisons(study, bootstrap)
    index = {(x["model"], x["strategy"], x["experiment"], x["task"]): x for x in systems}
    rq5 = rq5_groups(study, multitask, index, bootstrap)
    return Analysis(systems=systems, multitask=multitask, rq5=rq5)
