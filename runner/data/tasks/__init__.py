"""The task registry: every task the study can name, read top to bottom.

Study tasks first (the eight of the methodology), then the held-out NER tasks used only for
out-of-distribution evaluation.  Each module declares one ``SPEC`` (runner/data/tasks/spec.py).
"""

from __future__ import annotations

from runner.data.tasks import (
    bc2gm,
    bc5cdr_chem,
    bc5cdr_disease,
    biosses,
    chemprot,
    ddi,
    gad,
    hoc,
    jnlpba,
    linnaeus,
    ncbi_disease,
    pubmedqa,
    s800,
)
from runner.data.tasks.spec import SPLITS, Source, TaskSpec

TASKS: dict[str, TaskSpec] = {
    # the eight study tasks
    "bc2gm": bc2gm.SPEC,
    "jnlpba": jnlpba.SPEC,
    "chemprot": chemprot.SPEC,
    "ddi": ddi.SPEC,
    "gad": gad.SPEC,
    "hoc": hoc.SPEC,
    "pubmedqa": pubmedqa.SPEC,
    "biosses": biosses.SPEC,
    # held-out NER tasks (out-of-distribution evaluation)
    "ncbi_disease": ncbi_disease.SPEC,
    "bc5cdr_chem": bc5cdr_chem.SPEC,
    "bc5cdr_disease": bc5cdr_disease.SPEC,
    "s800": s800.SPEC,
    "linnaeus": linnaeus.SPEC,
}

STUDY_TASKS = tuple(name for name, spec in TASKS.items() if not spec.held_out)
HELD_OUT_TASKS = tuple(name for name, spec in TASKS.items() if spec.held_out)


def get_task(name: str) -> TaskSpec:
    """The task called ``name``; KeyError naming the known tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


__all__ = ["HELD_OUT_TASKS", "SPLITS", "STUDY_TASKS", "TASKS", "Source", "TaskSpec", "get_task"]
