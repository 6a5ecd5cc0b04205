"""The shipped phase manifests share one results folder (issue 28): phase 3 holds phases 1
and 2's jobs with the same ids, so running phase 1, then phase 3, reruns none of phase 1's
jobs (the executor with the stand-in job function, on the repository's data)."""

from __future__ import annotations

from pathlib import Path

from runner.orchestrate.local import run_plan
from runner.study.manifest import load_manifest
from runner.study.plan import build_plan
from tests.runner.orchestrate.test_local import env, events, standin_job  # noqa: F401

ROOT = Path(__file__).resolve().parents[3]

PHASES = [ROOT / f"manifests/{m}.toml" for m in
          ("phase1_single_task", "phase2_multi_task", "phase3_token_controlled")]


def _plan(path):
    return build_plan(load_manifest(path), ROOT / "data")


def test_one_folder_and_phase_3_contains_phases_1_and_2():
    plans = [_plan(p) for p in PHASES]
    assert len({p.manifest.study.results for p in plans}) == 1
    ids = [{j.job_id for j in p.jobs} for p in plans]
    assert len(ids[0]) == 72 and len(ids[1]) == 36
    assert ids[0] <= ids[2] and ids[1] <= ids[2]


def test_running_phase_1_then_phase_3_reruns_none_of_phase_1(tmp_path, env, monkeypatch):
    monkeypatch.setenv("STANDIN_SLEEP_S", "0")
    first, third = _plan(PHASES[0]), _plan(PHASES[2])
    folder = tmp_path / first.manifest.study.results   # relative, as from the repo root

    def run(plan):
        return run_plan(plan, tmp_path / plan.manifest.study.results, job_fn=standin_job,
                        out=lambda msg: None, heartbeat_s=0.2, poll_s=0.01)
    assert run(first) == 0
    assert run(third) == 0
    starts, _ = events(env["log"])
    assert set(starts.values()) == {1}                     # every job ran exactly once
    assert len(starts) == len(third.jobs)
    assert all((folder / j.job_id / "result.json").exists() for j in third.jobs)
