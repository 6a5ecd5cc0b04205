"""runner.observe wired into the runner: [study] tracking, --tracking, the executor's study
line and per-job heartbeat ETA, `status` (text and --json), `plan --estimate`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from runner.cli import main
from runner.observe.tracking import KNOWN_BACKENDS
from runner.orchestrate import local, report
from runner.orchestrate.ledger import Ledger, Worker
from runner.study.manifest import TRACKING_BACKENDS, load_manifest
from runner.study.plan import build_plan

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "manifests" / "demo.toml"
needs_data = pytest.mark.skipif(not (ROOT / "data" / "TOKEN_LENGTHS.json").exists(),
                                reason="no prepared data")


def test_manifest_backends_are_the_trackers():
    assert TRACKING_BACKENDS == KNOWN_BACKENDS


def _manifest(tmp_path: Path, tracking: str | None) -> Path:
    text = DEMO.read_text()
    if tracking is not None:
        text = text.replace('name = "demo"', f'name = "demo"\ntracking = {tracking}', 1)
    path = tmp_path / "m.toml"
    path.write_text(text)
    return path


@needs_data
def test_tracking_key_parsed_and_not_in_job_ids(tmp_path):
    plain = load_manifest(_manifest(tmp_path, None))
    tracked = load_manifest(_manifest(tmp_path, '["tensorboard", "wandb"]'))
    assert plain.study.tracking == () and tracked.study.tracking == ("tensorboard", "wandb")
    ids = [j.job_id for j in build_plan(plain, ROOT / "data").jobs]
    assert ids == [j.job_id for j in build_plan(tracked, ROOT / "data").jobs]


def test_unknown_backend_is_one_line_naming_file_and_key(tmp_path, capsys):
    path = _manifest(tmp_path, '["tensorbord"]')
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(path) in err and "study.tracking" in err and "did you mean 'tensorboard'" in err


def test_unknown_tracking_flag_is_bad_input(tmp_path, capsys):
    assert main(["run", str(DEMO), "--results-dir", str(tmp_path / "r"),
                 "--tracking", "tensorboard,nope"]) == 2
    assert "--tracking" in capsys.readouterr().err


def _demo_plan():
    return build_plan(load_manifest(DEMO), ROOT / "data")


@needs_data
def test_status_shows_running_jobs_with_eta_and_the_study_eta(tmp_path, capsys):
    plan = _demo_plan()
    ledger = Ledger(tmp_path)
    ledger.ensure()
    first, second, third = plan.jobs[:3]
    ledger.record_duration(first.job_id, first.experiment, 30.0)
    # a result proves its job done when it names the job (issue 25)
    ledger.write_result(first.job_id, {"experiment_id": first.job_id})
    ledger.finish(first.job_id)
    for job, worker in ((second, "w1"), (third, "w2")):
        claim = ledger.try_claim(job.job_id, Worker(worker), None)
        ledger.heartbeat(claim, {"phase": "train", "step": 10, "total_steps": 40,
                                 "tokens": 5000, "elapsed_s": 10.0, "rate": 1.0,
                                 "eta_s": 30.0})
    text = report.status(plan, tmp_path)
    for job, worker in ((second, "w1"), (third, "w2")):
        line = next(li for li in text.splitlines() if job.job_id in li)
        assert f"worker {worker}" in line and "step 10/40" in line and "ETA" in line
        assert "ETA ?" not in line and "heartbeat" in line
    assert "rest of the study: ETA" in text and "rest of the study: ETA ?" not in text
    data = json.loads(report.status(plan, tmp_path, as_json=True))
    assert {r["worker"] for r in data["running"]} == {"w1", "w2"}
    assert all(0 < r["eta_s"] <= 30 and r["heartbeat_age_s"] >= 0 for r in data["running"])
    assert data["study_eta_s"] > 0 and data["counts"]["done"] == 1


@needs_data
def test_executor_prints_study_line_and_annotates_heartbeats(tmp_path):
    plan = _demo_plan()
    lines: list[str] = []

    def job_fn(job, ctx):
        for step in range(1, 4):
            ctx.heartbeat({"phase": "train", "step": step, "total_steps": 3})
            time.sleep(0.01)
        assert ctx.tracking == ("mlflow",) and ctx.results_dir == Path(tmp_path)
        return {"ok": True}

    one = type(plan)(manifest=plan.manifest, data_dir=plan.data_dir, jobs=plan.jobs[:2])
    assert local.run_plan(one, tmp_path, job_fn=job_fn, out=lines.append,
                          tracking=("mlflow",)) == 0
    study = [li for li in lines if li.startswith("job ")]
    assert study[0].startswith("job 1 of 2") and "study ETA ?" in study[0]
    assert study[1].startswith("job 2 of 2 (1 done") and "study ETA ?" not in study[1]


@needs_data
def test_heartbeat_payload_gets_eta(tmp_path):
    plan = _demo_plan()
    seen: dict = {}

    def job_fn(job, ctx):
        for step in range(1, 5):
            ctx.heartbeat({"phase": "train", "step": step, "total_steps": 8})
            time.sleep(0.02)
        seen.update(Ledger(tmp_path).snapshot([job.job_id]).claims[job.job_id].progress or {})
        return {"ok": True}

    one = type(plan)(manifest=plan.manifest, data_dir=plan.data_dir, jobs=plan.jobs[:1])
    assert local.run_plan(one, tmp_path, job_fn=job_fn, out=lambda m: None,
                          heartbeat_s=0.01) == 0
    assert "elapsed_s" in seen and seen.get("eta_s") is not None and seen["rate"] > 0


@needs_data
def test_plan_estimate_cli(capsys):
    assert main(["plan", str(DEMO), "--estimate", "--gpu", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "ESTIMATE" in text and "total: 10 jobs" in text
    assert main(["plan", str(ROOT / "manifests" / "full_study.toml"), "--estimate",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["device"] == "t4" and data["total"]["jobs"] == len(data["jobs"]) > 100
    assert data["total"]["hours"] > 0 and data["total"]["fits_quota"] in (True, False)
