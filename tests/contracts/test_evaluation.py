"""Contract: runner.outputs.evaluation writes what stats.read.evaluation reads (RQ3)."""

from __future__ import annotations

import numpy as np
import pytest

from runner.ml.calibration import calibration_report


def _job(tmp_path, job_id="j1"):
    from stats.read.results import parse_result

    d = tmp_path / job_id
    d.mkdir()
    data = {"experiment_id": job_id, "experiment_type": "single_task_baseline", "seed": 1,
            "tasks": ["bc2gm"], "model": "minilm", "token_count": 10,
            "per_task": {"bc2gm": {"primary_metric": "f1", "metrics": {"f1": 0.5}}}}
    return d, parse_result(data, d / "result.json")


def test_evaluation_file_round_trips_to_stats(tmp_path):
    import json

    from runner.outputs.evaluation import (
        evaluation_document,
        evaluation_path,
        skipped_evaluation,
        write_evaluation,
    )
    from stats.read.evaluation import parse_evaluation

    job_dir, job = _job(tmp_path)
    rng = np.random.default_rng(3)
    z = rng.normal(size=(50, 3)) * 3
    y = rng.integers(0, 3, size=50)
    cal = calibration_report(z, y, z, y, kind="token")
    doc = evaluation_document(
        "j1", "int8", device="cpu", batch_size=32, latency_ms_per_example=1.5,
        throughput_examples_per_s=650.0, peak_memory_bytes=10**8, size_on_disk_bytes=2 * 10**7,
        per_task={"bc2gm": {"primary_metric": "f1", "metrics": {"f1": 0.7}, "n_test": 50,
                            "calibration": cal, "calibration_reason": None}})
    write_evaluation(job_dir, doc)
    path = evaluation_path(job_dir, "int8")
    ev = parse_evaluation(json.loads(path.read_text()), path, job)
    assert ev.status == "ok" and ev.size_on_disk_bytes == 2e7
    assert ev.per_task["bc2gm"]["calibration"]["ece_after"] == pytest.approx(cal["ece_after"])
    write_evaluation(job_dir, skipped_evaluation("j1", "nf4", "bitsandbytes needs CUDA"))
    path = evaluation_path(job_dir, "nf4")
    ev = parse_evaluation(json.loads(path.read_text()), path, job)
    assert ev.status == "skipped" and ev.reason == "bitsandbytes needs CUDA"
    # the environment a skip was decided under travels with it; stats reads the file as before
    env = {"device": "cpu (x, torch kernels AVX2)", "torch": "2.13.0", "bitsandbytes": "0.50.2"}
    write_evaluation(job_dir, skipped_evaluation("j1", "nf4", "RuntimeError: no", "cpu", env))
    data = json.loads(path.read_text())
    assert data["environment"] == env
    assert parse_evaluation(data, path, job).reason == "RuntimeError: no"
    with pytest.raises(ValueError, match="one-line"):
        skipped_evaluation("j1", "nf4", "RuntimeError: two\nlines")
    with pytest.raises(ValueError):
        evaluation_document("j1", "int4", device="cpu", batch_size=1, latency_ms_per_example=1,
                            throughput_examples_per_s=1, peak_memory_bytes=1,
                            size_on_disk_bytes=1, per_task={})
