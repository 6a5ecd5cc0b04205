"""Contract: runner.outputs.heldout writes what stats.read.heldout reads (RQ2)."""

from __future__ import annotations

import pytest

from runner.study.adapter import LoraSettings


def test_heldout_file_round_trips_to_stats(tmp_path):
    import json

    from runner.outputs.heldout import heldout_dir, heldout_document, write_heldout
    from stats.read.heldout import parse_heldout
    from stats.read.results import parse_result

    job_dir = tmp_path / "abc123"
    job_dir.mkdir()
    src = parse_result({"experiment_id": "abc123", "experiment_type": "multi_task", "seed": 2,
                        "tasks": ["bc2gm", "gad"], "model": "minilm", "token_count": 5,
                        "per_task": {t: {"primary_metric": "f1", "metrics": {"f1": 0.5}}
                                     for t in ("bc2gm", "gad")}}, job_dir / "result.json")
    doc = heldout_document(
        source_job_id="abc123", task="s800", seed=3, train_mode="head_and_adapter",
        adapter=LoraSettings(4, 8.0, 0.1, ("query", "value")),
        model_params={"total": 1000, "trainable": 50},
        budget={"max_steps": 100, "max_train_examples": 500, "steps": 100, "examples": 800,
                "tokens": 12345},
        per_task_entry={"primary_metric": "f1", "metrics": {"f1": 0.6}, "n_test": 10,
                        "stat_spec": {"kind": "counts"}, "predictions": "predictions/s800.parquet"})
    write_heldout(job_dir, doc)
    path = heldout_dir(job_dir, "s800", 3) / "heldout.json"
    run = parse_heldout(json.loads(path.read_text()), path, src)
    assert run.seed == 3 and run.adapter["r"] == 4 and run.result.metrics["f1"] == 0.6
    assert run.result.predictions_path == path.parent / "predictions" / "s800.parquet"
    with pytest.raises(ValueError):
        heldout_document(source_job_id="x", task="s800", seed=1, train_mode="head_and_adapter",
                         adapter=None, model_params={"total": 1, "trainable": 1}, budget={},
                         per_task_entry={"primary_metric": "f1", "metrics": {"f1": 1.0}})
