"""The task heads' shapes, without torch: runner.ml.model builds each head from these, and the
plan's LoRA rank matching counts their parameters from the same definition.

A token-level task (NER) has a ``TokenHead``: one ``Linear(hidden, n)`` on every token.  Every
other task has a ``SequenceHead``: ``Linear(hidden, hidden)`` with tanh on the [CLS] vector,
then ``Linear(hidden, n)``.  ``n`` is one output for regression, else one per label.
"""

from __future__ import annotations

from runner.data.tasks import get_task


def token_level(spec) -> bool:
    """Whether ``spec``'s head scores every token (a ``TokenHead``) instead of the sequence."""
    return spec.kind == "ner"


def head_outputs(spec) -> int:
    return 1 if spec.kind == "regression" else len(spec.labels)


def head_linears(spec, hidden: int) -> tuple[tuple[int, int], ...]:
    """(in, out) features of each ``Linear`` of ``spec``'s head, input first."""
    n = head_outputs(spec)
    return ((hidden, n),) if token_level(spec) else ((hidden, hidden), (hidden, n))


def head_parameters(task: str, hidden: int) -> int:
    """Parameters of ``task``'s head (weights and biases of its Linears)."""
    return sum(i * o + o for i, o in head_linears(get_task(task), hidden))
