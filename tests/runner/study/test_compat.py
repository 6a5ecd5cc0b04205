"""The compatibility rules (runner.study.compat): one place, a version, each rule listed once
and documented, and no copy of a rule's constants elsewhere in runner/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from runner.ml import batching, checkpoint, model
from runner.study import compat

ROOT = Path(__file__).resolve().parents[3]


def test_each_rule_is_documented_once_with_where_it_applies():
    assert isinstance(compat.COMPAT_VERSION, int) and compat.COMPAT_VERSION >= 1
    documented = re.findall(r"^\* ``([a-z_]+)``:", compat.__doc__, flags=re.M)
    assert sorted(documented) == sorted(compat.RULES)     # every rule, and only those
    assert len(documented) == len(set(documented))         # each once
    for rule, (keeps, where) in compat.RULES.items():
        assert keeps and all(w.strip().startswith("runner.") for w in where.split(",")), rule


def test_no_legacy_constant_is_defined_outside_compat():
    """A LEGACY_* name is assigned only in runner/study/compat.py (others import it)."""
    found = []
    for path in (ROOT / "runner").rglob("*.py"):
        if path.name == "compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AnnAssign) else [])
            found += [f"{path.relative_to(ROOT)}:{node.lineno}" for t in targets
                      if isinstance(t, ast.Name) and t.id.startswith("LEGACY_")]
    assert not found, found


def test_checkpoints_without_a_record_default_to_the_legacy_values():
    assert batching.LEGACY_BATCH_ORDER is compat.LEGACY_BATCH_ORDER != batching.BATCH_ORDER
    assert model.LEGACY_DROPOUT is compat.LEGACY_DROPOUT != model.DROPOUT
    progress = checkpoint.TrainingProgress(strategy="single_task", tasks=["gad"], batch_size=4,
                                           grad_accumulation=1, total_steps=1)
    assert (progress.batch_order, progress.dropout) == (compat.LEGACY_BATCH_ORDER,
                                                        compat.LEGACY_DROPOUT)


def test_former_max_length_keeps_the_config_of_jobs_cut_within_the_former_cap():
    assert compat.former_max_length("gad") == 128 and compat.former_max_length("nope") == 0
    # gad's former cap is 128: cut at 128 -> the key stays out (the old id)
    assert compat.lengths_per_task(128, {}, ("gad",)) is None
    # above its former cap, or lowered for a task: the lengths are recorded
    assert compat.lengths_per_task(256, {}, ("gad",)) == {"gad": 256}
    assert compat.lengths_per_task(128, {"gad": 64}, ("gad",)) == {"gad": 64}


def test_the_warmup_rule():
    given = {"warmup_steps": 100, "warmup_ratio": None}
    compat.warmup_config(given, 500, 0.1)
    assert given == {"warmup_steps": 100}
    ratio = {"warmup_steps": None, "warmup_ratio": 0.2}
    compat.warmup_config(ratio, 500, 0.1)
    assert ratio == {"warmup_ratio": 0.2}
    neither = {"warmup_steps": None, "warmup_ratio": None}
    compat.warmup_config(neither, 500, 0.1)
    assert neither == {"warmup_steps": 500, "warmup_cap": 0.1}


def test_a_reference_result_from_before_tokens_at_best_gives_its_best_entry():
    result = {"train_results": {"best_step": 8},
              "validation_history": [{"step": 4, "tokens": 10}, {"step": 8, "tokens": 20}]}
    assert compat.reference_best_entry(result) == {"step": 8, "tokens": 20}
    assert compat.reference_best_entry({}) == {}
    assert compat.predates_per_task_history([{"step": 4, "tokens": 10}])
    assert not compat.predates_per_task_history([{"tokens_per_task": {}}])
