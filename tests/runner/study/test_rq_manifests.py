"""The RQ3 / RQ4 manifests (demo and full scale) load, plan, and ask for what they say."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.study.manifest import has_pair_experiment, load_manifest, manifest_tasks
from runner.study.plan import build_plan

ROOT = Path(__file__).resolve().parents[3]
STUDY_TASKS = ("bc2gm", "jnlpba", "chemprot", "ddi", "gad", "hoc", "pubmedqa", "biosses")
ENCODERS = {"bert-base-uncased", "biobert", "scibert", "pubmedbert"}
NAMES = ("demo_rq3_efficiency", "demo_rq4_negative_transfer", "rq3_efficiency",
         "rq4_negative_transfer")


def plan_of(name: str, data_dir):
    return build_plan(load_manifest(ROOT / "manifests" / f"{name}.toml"), data_dir)


@pytest.mark.parametrize("name", NAMES)
def test_rq_manifest_loads_and_plans(name, tmp_path):
    plan = plan_of(name, tmp_path)
    assert plan.jobs and plan.manifest.study.name == name
    if (ROOT / "data" / "SHA256SUMS").exists():
        jobs = plan_of(name, ROOT / "data").jobs
        assert len(jobs) == len(plan.jobs) and all(j.data_checksums for j in jobs)


def test_demo_sizes(tmp_path):
    rq3 = plan_of("demo_rq3_efficiency", tmp_path).jobs
    assert [(j.strategy, j.tasks) for j in rq3] == [("single_task", ("bc2gm",)),
                                                   ("single_task", ("gad",))]
    rq4 = plan_of("demo_rq4_negative_transfer", tmp_path)
    pairs = [j.tasks for j in rq4.jobs if j.strategy == "multi_task"]
    assert sorted(pairs) == [("bc2gm", "gad"), ("bc2gm", "jnlpba"), ("jnlpba", "gad")]
    assert len([j for j in rq4.jobs if j.strategy == "single_task"]) == 3
    assert has_pair_experiment(rq4.manifest)
    for job in (*rq3, *rq4.jobs):
        assert job.model == "minilm" and job.config["max_length"] == 128
        assert job.config["max_eval_examples"] == 150
    for job in rq3:
        assert all(n == 400 for n in job.config["max_train_examples"].values())
    for job in rq4.jobs:  # three tasks and their pairs: smaller subsets to stay under 15 min
        assert all(n == 300 for n in job.config["max_train_examples"].values())


def test_full_scale_sizes_and_shared_job_ids(tmp_path):
    rq3 = plan_of("rq3_efficiency", tmp_path).jobs
    assert len(rq3) == 4 * 8 * 5 and {j.model for j in rq3} == ENCODERS
    rq4 = plan_of("rq4_negative_transfer", tmp_path)
    multi = [j for j in rq4.jobs if j.strategy == "multi_task"]
    assert len(multi) == 28 * 4 * 3 and all(len(j.tasks) == 2 for j in multi)
    assert manifest_tasks(rq4.manifest) == STUDY_TASKS and has_pair_experiment(rq4.manifest)
    # same config as the full study: its finished single-task jobs are these jobs
    full = {j.job_id for j in plan_of("full_study", tmp_path).jobs
            if j.strategy == "single_task"}
    assert {j.job_id for j in rq3} == full
    assert {j.job_id for j in rq4.jobs if j.strategy == "single_task"} <= full
