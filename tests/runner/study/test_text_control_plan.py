"""The text-matched control in the manifest, the plan, the design check and the estimate
(issue 26): the default keeps every job id, "text" copies its multi-task job's settings into
its config (so its id), bad combinations are one-line errors, and the shipped manifests plan
with zero infeasible token-controlled jobs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import InputError
from runner.observe import estimate
from runner.study import design
from runner.study.manifest import load_manifest, parse_manifest
from runner.study.plan import build_plan

ROOT = Path(__file__).resolve().parents[3]

BASE = """\
[study]
name = "t"
seeds = [1, 2]

[defaults]
max_train_examples = {{bc2gm = 40, gad = 20}}

[[experiments]]
name = "multi"
strategy = "multi_task"
models = ["minilm"]
task_sets = [["bc2gm", "gad"]]
learning_rate = 3e-4

[[experiments]]
name = "tc"
strategy = "token_controlled"
reference = "multi"
{extra}
"""


def plan_of(extra: str = ""):
    return build_plan(parse_manifest(BASE.format(extra=extra), "m.toml"), ROOT / "data")


def test_the_default_control_keeps_every_job_id():
    ids = [j.job_id for j in plan_of().jobs]
    assert [j.job_id for j in plan_of('control = "repeat"').jobs] == ids
    # a manifest of this form planned before the control existed: these ids (issue 12's)
    tc = [j for j in plan_of().jobs if j.strategy == "token_controlled"]
    assert all("control" not in j.config for j in tc)
    assert "token_controlled_max_epochs" in tc[0].config


def test_the_text_control_replays_its_multi_task_jobs_settings():
    plan = plan_of('control = "text"')
    ids = plan.by_id()
    text = [j for j in plan.jobs if j.strategy == "token_controlled"]
    assert len(text) == 4 and {j.tasks for j in text} == {("bc2gm",), ("gad",)}
    repeat_ids = {j.job_id for j in plan_of().jobs}
    for job in text:
        ref = ids[job.depends_on[0]]
        assert job.job_id not in repeat_ids
        assert job.config["control"] == {"kind": "text", "mask_probability": 0.15,
                                         "tasks": ["bc2gm", "gad"]}
        for key in ("learning_rate", "batch_size", "max_train_examples", "sampling",
                    "max_epochs"):
            assert job.config[key] == ref.config[key], key
        assert job.config["batch_size"] == 8 and job.config["learning_rate"] == 3e-4
        assert "token_controlled_max_epochs" not in job.config
        assert design.is_text_control(job)


@pytest.mark.parametrize("extra, where, says", [
    ('control = "text"\nparity = "per_task"', "parity", 'parity = "total" only'),
    ('control = "text"\nbatch_size = 16', "batch_size", "multi-task job's setting"),
    ('control = "texts"', "control", "did you mean 'text'"),
])
def test_bad_text_control_settings_are_one_line_errors(extra, where, says):
    with pytest.raises(InputError) as err:
        plan_of(extra)
    text = str(err.value)
    assert "\n" not in text and where in text and says in text and "m.toml" in text


def test_the_design_check_and_the_estimate_name_the_text_control():
    plan = plan_of('control = "text"')
    check = design.check(plan)
    assert all(t.feasible and t.control == "text" and t.epoch_cap is None
               for t in check.token_controlled)
    rendered = "\n".join(design.render(check))
    assert "TEXT-MATCHED control" in rendered and "initialised as BERT's" in rendered
    sizes = {s.job_id: s for s in estimate.job_sizes(plan)}
    ref = {j.job_id: j for j in plan.jobs if j.strategy == "multi_task"}
    for job in plan.jobs:
        if job.strategy == "token_controlled":
            mt = sizes[job.depends_on[0]]
            assert sizes[job.job_id].train_tokens == pytest.approx(mt.train_tokens)
            assert "costs what its multi-task job does" in sizes[job.job_id].label
            assert job.depends_on[0] in ref


@pytest.mark.parametrize("manifest", ["text_controlled.toml", "demo_text_controlled.toml"])
def test_the_shipped_manifests_have_no_infeasible_token_controlled_job(manifest):
    plan = build_plan(load_manifest(ROOT / "manifests" / manifest), ROOT / "data",
                      require_data=True)
    check = design.check(plan)
    tc = [j for j in plan.jobs if j.strategy == "token_controlled"]
    assert tc and all(design.is_text_control(j) for j in tc)
    assert len(check.token_controlled) == len(tc)
    assert all(t.feasible for t in check.token_controlled)
    # one text-controlled job per task of every multi-task job, every task of every set
    for mt in (j for j in plan.jobs if j.strategy == "multi_task"):
        mine = sorted(j.tasks[0] for j in tc if j.depends_on == (mt.job_id,))
        assert mine == sorted(mt.tasks)


def test_plan_cli_prints_the_estimate_with_the_text_control_line():
    out = subprocess.run(
        [sys.executable, "-m", "runner", "plan", "manifests/text_controlled.toml",
         "--estimate"], check=False, cwd=ROOT, capture_output=True, text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
             "HOME": str(Path.home())})
    assert out.returncode == 0, out.stderr
    assert "of which 576 text-matched control jobs" in out.stdout
    assert "each costs what its multi-task job costs" in out.stdout
