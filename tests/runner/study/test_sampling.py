"""The task sampler: its probabilities follow their formulas, and its draws restore exactly."""

from __future__ import annotations

import json

import pytest

from runner.study import sampling as smp


# ----------------------------------------------------------------------------- sampler
def test_sampler_probabilities_follow_their_formulas():
    sizes = {"a": 1000, "b": 100, "c": 10}
    p = smp.task_probabilities(sizes)
    assert p == pytest.approx({"a": 1000 / 1110, "b": 100 / 1110, "c": 10 / 1110})
    t = smp.task_probabilities(sizes, "temperature", temperature=2.0)
    w = {k: v ** 0.5 for k, v in sizes.items()}
    assert t == pytest.approx({k: v / sum(w.values()) for k, v in w.items()})
    c = smp.task_probabilities(sizes, "capped", examples_cap=100)
    assert c == pytest.approx({"a": 100 / 210, "b": 100 / 210, "c": 10 / 210})
    with pytest.raises(ValueError):
        smp.task_probabilities(sizes, "capped")


@pytest.mark.parametrize("strategy,kw", [("proportional", {}), ("temperature", {"temperature": 3.0}),
                                         ("capped", {"examples_cap": 50})])
def test_sampler_realised_shares_and_direct_restore(strategy, kw):
    sizes = {"a": 600, "b": 300, "c": 100}
    s = smp.TaskSampler(sizes, seed=7, sampling=strategy, **kw)
    draws = [s.next_task() for _ in range(20000)]
    for task, prob in s.probabilities.items():
        assert draws.count(task) / len(draws) == pytest.approx(prob, abs=0.015)
    state = json.loads(json.dumps(s.state_dict()))  # what a checkpoint stores
    ahead = [s.next_task() for _ in range(50)]
    fresh = smp.TaskSampler(sizes, seed=7, sampling=strategy, **kw)
    fresh.load_state_dict(state)
    assert [fresh.next_task() for _ in range(50)] == ahead
    other = smp.TaskSampler(sizes, seed=8, sampling=strategy, **kw)
    assert [other.next_task() for _ in range(50)] != draws[:50]

