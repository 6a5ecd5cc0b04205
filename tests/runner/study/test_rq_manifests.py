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


# Architecture (layers, hidden, heads) of each BERT hub id in the RQ3 size axis: the compact
# BERTs name theirs (L-2_H-128_A-2); BERT-base and -large are the paper's.
ARCHITECTURES = {"bert-base-uncased": (12, 768, 12), "bert-large-uncased": (24, 1024, 16),
                 "google/bert_uncased_L-2_H-128_A-2": (2, 128, 2),
                 "google/bert_uncased_L-4_H-256_A-4": (4, 256, 4),
                 "google/bert_uncased_L-4_H-512_A-8": (4, 512, 8)}


def bert_parameters(hub_id: str) -> int:
    """Parameters of the BertModel of that architecture, counted on the meta device."""
    import torch
    from transformers import BertConfig, BertModel

    layers, hidden, heads = ARCHITECTURES[hub_id]
    config = BertConfig(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                        intermediate_size=4 * hidden)
    with torch.device("meta"):
        return sum(p.numel() for p in BertModel(config).parameters())


def test_full_scale_sizes_and_shared_job_ids(tmp_path):
    plan3 = plan_of("rq3_efficiency", tmp_path)
    rq3 = plan3.jobs
    study = [j for j in rq3 if j.experiment == "single_task"]
    assert len(study) == 4 * 8 * 5 and {j.model for j in study} == ENCODERS
    rq4 = plan_of("rq4_negative_transfer", tmp_path)
    multi = [j for j in rq4.jobs if j.strategy == "multi_task"]
    assert len(multi) == 28 * 4 * 3 and all(len(j.tasks) == 2 for j in multi)
    assert manifest_tasks(rq4.manifest) == STUDY_TASKS and has_pair_experiment(rq4.manifest)
    # same config as the full study: its finished single-task jobs are these jobs
    full = {j.job_id for j in plan_of("full_study", tmp_path).jobs
            if j.strategy == "single_task"}
    assert {j.job_id for j in study} == full
    # RQ4's baselines train at the pairs' batch (equal updates per example), so not the full
    # study's jobs
    single = [j for j in rq4.jobs if j.strategy == "single_task"]
    assert {j.config["batch_size"] for j in single} == {j.config["batch_size"] for j in multi}
    assert {j.config["grad_accumulation"] for j in single} == \
        {j.config["grad_accumulation"] for j in multi}


def test_rq3_has_a_size_axis_of_four_or_more_sizes_over_ten_times():
    from runner.study.models import model_key

    manifest = load_manifest(ROOT / "manifests" / "rq3_efficiency.toml")
    hub_ids = {model_key(a, manifest.models) for e in manifest.experiments for a in e.models}
    sizes = sorted({bert_parameters(h) for h in hub_ids if h in ARCHITECTURES})
    assert len(sizes) >= 4 and sizes[-1] / sizes[0] >= 10
    assert sizes[0] < 5e6 and sizes[-1] > 3e8      # BERT-tiny 4.4 M ... BERT-large 335 M
