"""Plan expansion: job counts, dependencies, and ids that name what a job computes."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import InputError
from runner.manifest import load_manifest, parse_manifest
from runner.plan import build_plan

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "manifests").glob("*.toml"))

BASE = """\
[study]
name = "p"
seeds = [1, 2]

[[experiments]]
name = "st"
strategy = "single_task"
models = ["minilm", "biobert"]
tasks = ["bc2gm", "gad"]

[[experiments]]
name = "mt"
strategy = "multi_task"
models = ["minilm"]
task_sets = [["bc2gm", "gad"], ["chemprot", "ddi"]]

[[experiments]]
name = "tc"
strategy = "token_controlled"
reference = "mt"
"""


def ids(text: str, data_dir) -> dict[tuple, str]:
    """job_id by what the job is (a token-controlled job: by its reference's task set)."""
    plan = build_plan(parse_manifest(text, "m.toml"), data_dir)
    tasks = {j.job_id: j.tasks for j in plan.jobs}
    return {(j.strategy, j.model, j.tasks, j.seed, tuple(tasks[d] for d in j.depends_on)):
            j.job_id for j in plan.jobs}


def test_expansion_counts_and_dependencies(tmp_path):
    plan = build_plan(parse_manifest(BASE, "m.toml"), tmp_path)
    by = {}
    for j in plan.jobs:
        by.setdefault(j.strategy, []).append(j)
    assert len(by["single_task"]) == 2 * 2 * 2
    assert len(by["multi_task"]) == 2 * 2
    assert len(by["token_controlled"]) == 2 * 4   # one per task of each multi-task job
    mt_ids = {j.job_id: j for j in by["multi_task"]}
    for j in by["token_controlled"]:
        (ref,) = j.depends_on
        assert ref in mt_ids and j.tasks[0] in mt_ids[ref].tasks
        assert mt_ids[ref].seed == j.seed and mt_ids[ref].model == j.model
        assert j.parity == "total" and j.experiment_type == "token_controlled_baseline"
        assert j.config["batch_size"] == 16
    assert all(j.config["batch_size"] == 8 for j in by["multi_task"])
    assert len({j.job_id for j in plan.jobs}) == len(plan.jobs)
    assert all(len(j.job_id) == 12 and int(j.job_id, 16) >= 0 for j in plan.jobs)


def test_reordering_and_extending_never_renames_jobs(tmp_path):
    before = ids(BASE, tmp_path)
    exps = BASE.split("[[experiments]]")
    reordered = exps[0] + "[[experiments]]" + "[[experiments]]".join(reversed(exps[1:]))
    reordered = reordered.replace('"minilm", "biobert"', '"biobert", "minilm"')
    reordered = reordered.replace('["bc2gm", "gad"], ["chemprot", "ddi"]',
                                  '["ddi", "chemprot"], ["gad", "bc2gm"]')
    reordered = reordered.replace("seeds = [1, 2]", "seeds = [2, 1]")
    assert ids(reordered, tmp_path) == before
    extended = BASE.replace("seeds = [1, 2]", "seeds = [1, 2, 3]").replace(
        'tasks = ["bc2gm", "gad"]', 'tasks = ["bc2gm", "gad", "hoc"]')
    after = ids(extended, tmp_path)
    assert set(before.items()) <= set(after.items())
    assert len(after) > len(before)
    renamed = BASE.replace('name = "st"', 'name = "single"')
    assert ids(renamed, tmp_path) == before      # the experiment's name is not its identity


def test_ids_change_with_what_is_computed(tmp_path):
    before = ids(BASE, tmp_path)
    lr = ids(BASE + "learning_rate = 1e-5\n", tmp_path)  # tc experiment only
    changed = {k for k in before if before[k] != lr.get(k)}
    assert changed and all(k[0] == "token_controlled" for k in changed)
    parity = ids(BASE + 'parity = "per_task"\n', tmp_path)
    assert {k for k in before if before[k] != parity.get(k)} == changed
    # checkpoint cadence is not part of a job's identity
    assert ids(BASE.replace("[[experiments]]", "[defaults]\ncheckpoint_every_s = 10.0\n\n"
                            "[[experiments]]", 1), tmp_path) == before
    # multi-task sampling settings never rename single-task jobs
    sampled = ids(BASE.replace("[[experiments]]", "[defaults]\nsampling = \"capped\"\n"
                               "examples_cap = 1000\n\n[[experiments]]", 1), tmp_path)
    assert all(sampled[k] == v for k, v in before.items() if k[0] == "single_task")
    assert all(sampled.get(k) != v for k, v in before.items() if k[0] != "single_task")


def test_data_checksums_are_part_of_the_id(tmp_path):
    before = ids(BASE, tmp_path)
    (tmp_path / "SHA256SUMS").write_text(f"{'a' * 64}  gad/train.parquet\n"
                                         f"{'b' * 64}  bc2gm/test.parquet\n")
    plan = build_plan(parse_manifest(BASE, "m.toml"), tmp_path)
    after = ids(BASE, tmp_path)
    for key, job_id in before.items():
        touches = {"gad", "bc2gm"} & (set(key[2]) | {t for ts in key[4] for t in ts})
        assert (after[key] != job_id) == bool(touches), key
    gad = next(j for j in plan.jobs if j.tasks == ("gad",) and j.strategy == "single_task")
    assert gad.data_checksums == {"gad/train.parquet": "a" * 64}
    (tmp_path / "SHA256SUMS").write_text("not a checksum line\n")
    with pytest.raises(InputError, match="SHA256SUMS:1"):
        build_plan(parse_manifest(BASE, "m.toml"), tmp_path)


def test_the_same_job_twice_is_an_input_error(tmp_path):
    text = BASE + ('\n[[experiments]]\nname = "st2"\nstrategy = "single_task"\n'
                   'models = ["minilm"]\ntasks = ["gad"]\n')
    with pytest.raises(InputError, match="repeats job"):
        build_plan(parse_manifest(text, "m.toml"), tmp_path)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_manifest_loads_and_plans(path, tmp_path):
    plan = build_plan(load_manifest(path), tmp_path)
    assert plan.jobs
    known = {j.job_id for j in plan.jobs}
    assert all(d in known for j in plan.jobs for d in j.depends_on)
    # also with the real prepared data, where it exists
    if (ROOT / "data" / "SHA256SUMS").exists():
        assert len(build_plan(load_manifest(path), ROOT / "data").jobs) == len(plan.jobs)


def test_shipped_manifest_sizes(tmp_path):
    def n(name, strategy=None):
        jobs = build_plan(load_manifest(ROOT / "manifests" / name), tmp_path).jobs
        return len([j for j in jobs if strategy in (None, j.strategy)])
    assert n("phase1_single_task.toml") == 24
    assert n("phase2_multi_task.toml") == 12
    assert n("full_study.toml", "single_task") == 4 * 8 * 5
    assert n("full_study.toml", "token_controlled") == 4 * 5 * (2 + 2 + 3 + 8) * 2
    demo = build_plan(load_manifest(ROOT / "manifests/demo.toml"), tmp_path).jobs
    assert {j.strategy for j in demo} == {"single_task", "multi_task", "token_controlled"}
    assert all(j.model == "minilm" for j in demo)


def test_job_id_is_the_hash_of_the_documented_identity(tmp_path):
    from runner.models_registry import model_key
    from runner.plan import NOT_IN_ID, job_id_of

    (tmp_path / "SHA256SUMS").write_text(f"{'c' * 64}  gad/train.parquet\n")
    manifest = parse_manifest(BASE, "m.toml")
    plan = build_plan(manifest, tmp_path)
    for job in plan.jobs:
        identity = {"strategy": job.strategy, "model": model_key(job.model),
                    "tasks": list(job.tasks), "seed": job.seed,
                    "config": {k: v for k, v in job.config.items() if k not in NOT_IN_ID},
                    "parity": job.parity,
                    "reference_job": job.depends_on[0] if job.depends_on else None,
                    "data_checksums": job.data_checksums}
        assert job.job_id == job_id_of(identity)
