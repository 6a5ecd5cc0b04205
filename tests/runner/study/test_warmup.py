"""Warm-up (issue 23): the default is 500 optimizer steps but never more than 10% of a job's
planned steps; ``warmup_ratio`` is the alternative key; a job id changes only where the
schedule does; the engine warms up for what the rule says and records it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from runner.errors import InputError
from runner.ml.train import make_optimizer
from runner.study.config import TrainConfig, peak_lr_factor
from runner.study.manifest import load_manifest, parse_manifest
from runner.study.plan import build_plan

ROOT = Path(__file__).resolve().parents[3]

STUDY = """\
[study]
name = "w"
seeds = [1]

[defaults]
{defaults}

[[experiments]]
name = "st"
strategy = "single_task"
models = ["minilm"]
tasks = ["biosses"]
{experiment}

[[experiments]]
name = "mt"
strategy = "multi_task"
models = ["minilm"]
task_sets = [["bc2gm", "biosses"]]

[[experiments]]
name = "tc"
strategy = "token_controlled"
reference = "mt"
parity = "total"
"""


def plan(defaults="", experiment=""):
    text = STUDY.format(defaults=defaults, experiment=experiment)
    return build_plan(parse_manifest(text, "w.toml"), ROOT / "data")


def job(p, experiment):
    return next(j for j in p.jobs if j.experiment == experiment)


def test_both_keys_in_one_table_is_one_line_naming_the_place():
    with pytest.raises(InputError) as info:
        plan(defaults="warmup_steps = 10\nwarmup_ratio = 0.1")
    text = str(info.value)
    assert "\n" not in text and "w.toml:" in text and "defaults.warmup_ratio" in text
    assert "not both" in text
    with pytest.raises(InputError, match="experiments"):
        plan(experiment="warmup_steps = 10\nwarmup_ratio = 0.1")
    with pytest.raises(InputError, match="warmup_ratio"):
        plan(defaults="warmup_ratio = 1.5")


def test_config_records_the_rule_and_an_experiment_key_replaces_the_defaults_one():
    default = plan()
    st = job(default, "st").config
    assert (st["warmup_steps"], st["warmup_cap"]) == (500, 0.1) and "warmup_ratio" not in st
    ratio = job(plan(defaults="warmup_steps = 20", experiment="warmup_ratio = 0.06"), "st")
    assert ratio.config["warmup_ratio"] == 0.06 and "warmup_steps" not in ratio.config
    steps = job(plan(defaults="warmup_ratio = 0.06", experiment="warmup_steps = 20"), "st")
    assert steps.config["warmup_steps"] == 20
    assert "warmup_ratio" not in steps.config and "warmup_cap" not in steps.config


def test_job_ids_change_only_where_the_schedule_does():
    old = plan(defaults="warmup_steps = 500")     # what every job did before the cap
    new = plan()
    ids_old = {(j.experiment, j.tasks): j.job_id for j in old.jobs}
    ids_new = {(j.experiment, j.tasks): j.job_id for j in new.jobs}
    # BIOSSES: 64 rows, batch 16, 10 epochs = 40 planned steps: the cap binds, a new job
    assert ids_new[("st", ("biosses",))] != ids_old[("st", ("biosses",))]
    # bc2gm + biosses, batch 8: 10 x (1572 + 8) = 15,800 steps: 500 either way, same id
    mt = job(new, "mt")
    assert "warmup_cap" not in mt.config
    assert ids_new[("mt", ("bc2gm", "biosses"))] == ids_old[("mt", ("bc2gm", "biosses"))]
    # token-controlled steps follow the reference's tokens: the engine applies the cap
    assert all("warmup_cap" in j.config for j in new.jobs if j.strategy == "token_controlled")
    # max_steps known at plan time: 6000 steps keep the old id, 40 do not
    long_new, long_old = plan("max_steps = 6000"), plan("max_steps = 6000\nwarmup_steps = 500")
    assert job(long_new, "st").job_id == job(long_old, "st").job_id
    short_new, short_old = plan("max_steps = 40"), plan("max_steps = 40\nwarmup_steps = 500")
    assert job(short_new, "st").job_id != job(short_old, "st").job_id


@pytest.mark.parametrize("config, total, expected", [
    ({"warmup_steps": 500, "warmup_cap": 0.1}, 40, (4, "default")),
    ({"warmup_steps": 500, "warmup_cap": 0.1}, 290, (29, "default")),
    ({"warmup_steps": 500, "warmup_cap": 0.1}, 99_999, (500, "default")),
    ({"warmup_steps": 500}, 40, (500, "warmup_steps")),        # a config from before the cap
    ({"warmup_ratio": 0.06}, 290, (18, "warmup_ratio")),       # ceil(17.4), as transformers
    ({"warmup_steps": None}, 290, (29, "default")),
])
def test_the_rule_gives_the_steps(config, total, expected):
    assert TrainConfig.from_dict(config).warmup_for(total) == expected


def test_peak_factor_is_one_once_the_warm_up_ends_within_the_job():
    assert peak_lr_factor(4, 40) == 1.0 and peak_lr_factor(0, 40) == 1.0
    assert peak_lr_factor(500, 40) == pytest.approx(39 / 500)    # the old BIOSSES schedule


def lrs(cfg: TrainConfig, total: int) -> list[float]:
    """The learning rate of each of a job's optimizer steps under make_optimizer's schedule."""
    opt, sched = make_optimizer(torch.nn.Linear(2, 2), cfg, torch.device("cpu"), total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_a_methodology_biosses_job_warms_up_for_at_most_10_percent_and_peaks_at_its_lr():
    """The shipped phase-1 manifest (the methodology's settings) on the committed data."""
    p = build_plan(load_manifest(ROOT / "manifests" / "phase1_single_task.toml"), ROOT / "data")
    biosses = next(j for j in p.jobs if j.tasks == ("biosses",))
    cfg = biosses.settings
    total = 40        # 64 training rows, batch 16, 10 epochs
    warmup, rule = cfg.warmup_for(total)
    assert rule == "default" and warmup <= total // 10
    seen = lrs(cfg, total)
    assert max(seen) == pytest.approx(cfg.learning_rate)
    assert seen.index(max(seen)) == warmup
    # the schedule it had: 500 steps of warm-up in a 40-step job never passes 7.8% of the rate
    old = lrs(TrainConfig.from_dict({**biosses.config, "warmup_cap": None}), total)
    assert max(old) == pytest.approx(cfg.learning_rate * 39 / 500)
