"""The strategy table (runner.study.strategies): each strategy's flags, and the code below the
manifest asks those flags, never a strategy's name."""

from __future__ import annotations

import ast
from pathlib import Path

from runner.study.strategies import STRATEGIES, ExpandExperiment, ReadExperiment

ROOT = Path(__file__).resolve().parents[3]
FLAGS = ("needs_reference", "referable", "samples_tasks", "token_target", "early_stopping",
         "test_weights", "baseline", "batch_size")


def test_the_flags_table():
    table = {name: tuple(getattr(s, f) for f in FLAGS) for name, s in STRATEGIES.items()}
    assert table == {
        #                  needs_ref refer. samples target early  tested  baseline batch
        "single_task":      (False, False, False, False, True, "best", True, 16),
        "multi_task":       (False, True, True, False, True, "best", False, 8),
        "token_controlled": (True, False, False, True, False, "final", False, 16),
    }


def test_a_token_target_goes_with_a_reference_and_no_early_stopping():
    """A job trained to another job's token count needs that job, must not stop before the
    target, and is tested at its final weights (the methodology's rule)."""
    for s in STRATEGIES.values():
        if s.token_target:
            assert s.needs_reference and not s.early_stopping and s.test_weights == "final"
        assert s.test_weights in ("best", "final")
        # a referable strategy is one a reference can point at: never one that needs one
        assert not (s.referable and s.needs_reference)


def test_the_callbacks_have_the_typed_shapes():
    import inspect

    read_params = list(inspect.signature(ReadExperiment.__call__).parameters)[1:]
    expand_params = list(inspect.signature(ExpandExperiment.__call__).parameters)[1:]
    for s in STRATEGIES.values():
        assert len(inspect.signature(s.read).parameters) == len(read_params)
        assert len(inspect.signature(s.expand).parameters) == len(expand_params)


def _compared_strategy_names(path: Path) -> list[str]:
    """``x == "token_controlled"`` (and !=, in) comparisons with a strategy's name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                if isinstance(side, ast.Constant) and side.value in STRATEGIES:
                    found.append(f"{path.name}:{node.lineno}: {side.value}")
    return found


def test_no_strategy_name_is_compared_below_the_manifest():
    files = ["runner/ml/train.py", "runner/recipes/train_job.py", "runner/recipes/heldout.py",
             "runner/outputs/result.py", "runner/study/design.py", "runner/study/parser.py",
             "runner/study/resolve.py", "runner/study/manifest.py"]
    found = [hit for f in files for hit in _compared_strategy_names(ROOT / f)]
    assert not found, found
