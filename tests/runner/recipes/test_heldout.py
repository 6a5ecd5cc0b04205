"""RQ2: adapter jobs (trainable parameters, exact resume), parameter-matched ranks in the plan,
held-out evaluation (files, schema, skipped on rerun, resumed without retraining), and
unchanged job ids of the manifests written before adapters existed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.errors import InputError
from runner.jobapi import JobInterrupted
from runner.ml import checkpoint as ckpt
from runner.ml.lora import encoder_lora_shape, lora_trainable
from runner.ml.model import MultiTaskModel
from runner.outputs.heldout import heldout_dir
from runner.recipes import train_job as engine_job
from runner.study.heads import head_parameters
from runner.study.manifest import parse_manifest
from runner.study.plan import build_plan
from tests.runner import jobs
from tests.runner.jobs import SPECS, make_job

ROOT = Path(__file__).resolve().parents[3]
# the engine tests' fixtures: a tiny BERT + WordPiece tokenizer, synthetic tasks
env, tiny_model = jobs.env, jobs.tiny_model
LORA = {"method": "lora", "r": 2, "alpha": 4.0, "dropout": 0.1,
        "target_modules": ["query", "value"]}
HIDDEN = 32  # the tiny BERT of test_engine: 2 layers, hidden 32
# LoRA on query and value (32 -> 32) in 2 layers: r * 2 layers * 2 modules * (32 + 32)
LORA_PER_RANK = 2 * 2 * (HIDDEN + HIDDEN)
NER_HEAD = HIDDEN * 3 + 3                                    # Linear(32, 3)
CLS_HEAD = HIDDEN * HIDDEN + HIDDEN + HIDDEN * 2 + 2         # Linear(32, 32) + Linear(32, 2)


def full_model_total(model_path: Path, tasks) -> int:
    from runner.ml.model import build_model

    return sum(p.numel() for p in build_model(str(model_path), {t: SPECS[t] for t in tasks})
               .parameters())


def test_adapter_jobs_train_only_lora_and_heads(env):
    model_path, _data_dir, ctx = env
    single = engine_job.run_job(make_job(model_path, tasks=("tiny_ner",), max_steps=4,
                                         eval_every=4, adapter=LORA), ctx("st"))
    assert single["model_params"] == {
        "trainable": 2 * LORA_PER_RANK + NER_HEAD, "encoder_trainable": 2 * LORA_PER_RANK,
        "total": full_model_total(model_path, ["tiny_ner"]) + 2 * LORA_PER_RANK}
    assert single["config"]["adapter"] == LORA
    multi = engine_job.run_job(make_job(model_path, tasks=("tiny_ner", "tiny_cls"),
                                        strategy="multi_task", max_steps=4, eval_every=4,
                                        adapter=LORA), ctx("mt"))
    # one adapter shared by both task heads
    assert multi["model_params"]["trainable"] == 2 * LORA_PER_RANK + NER_HEAD + CLS_HEAD
    assert multi["model_params"]["encoder_trainable"] == 2 * LORA_PER_RANK
    full = engine_job.run_job(make_job(model_path, tasks=("tiny_ner",), max_steps=4,
                                       eval_every=4), ctx("full"))
    assert full["model_params"]["trainable"] == full["model_params"]["total"] == \
        full_model_total(model_path, ["tiny_ner"])


def test_adapter_job_should_stop_and_resume_is_exact(env):
    model_path, _data_dir, ctx = env
    job = make_job(model_path, tasks=("tiny_ner", "tiny_cls"), strategy="multi_task",
                   max_steps=10, eval_every=4, patience=100, adapter=LORA)
    reference = engine_job.run_job(job, ctx("reference"))
    calls = {"n": 0}

    def stop_after_5():
        calls["n"] += 1
        return calls["n"] == 5
    c = ctx("interrupted", should_stop=stop_after_5)
    with pytest.raises(JobInterrupted):
        engine_job.run_job(job, c)
    assert [p.name for _, p in ckpt.list_checkpoints(c.job_dir / "checkpoints")] == \
        ["checkpoint-5"]
    resumed = engine_job.run_job(job, c)
    assert resumed["test_results"] == reference["test_results"]
    assert resumed["validation_history"] == reference["validation_history"]
    assert resumed["train_results"]["train_loss"] == reference["train_results"]["train_loss"]


HELDOUT = {"tasks": ["tiny_cls", "tiny_reg"], "seeds": [1, 2], "max_steps": 3,
           "max_train_examples": 20, "max_eval_examples": None, "learning_rate": 1e-3,
           "train_mode": "head", "batch_size": 4}


def test_heldout_writes_documents_and_is_skipped_on_rerun(env):
    model_path, _data_dir, ctx = env
    job = make_job(model_path, tasks=("tiny_ner",), max_steps=4, eval_every=4, adapter=LORA,
                   heldout=HELDOUT)
    c = ctx("ho")
    result = engine_job.run_job(job, c)
    docs = {}
    for task in HELDOUT["tasks"]:
        for seed in HELDOUT["seeds"]:
            folder = heldout_dir(c.job_dir, task, seed)
            doc = json.loads((folder / "heldout.json").read_text())
            docs[(task, seed)] = doc
            assert doc["schema"] == "heldout/1" and doc["source_job_id"] == job.job_id
            assert (doc["task"], doc["seed"], doc["train_mode"]) == (task, seed, "head")
            assert doc["adapter"] == LORA
            entry = doc["per_task"][task]
            assert entry["primary_metric"] == SPECS[task].primary_metric
            assert set(SPECS[task].metrics) <= set(entry["metrics"])
            assert (folder / entry["predictions"]).is_file()
            assert entry["n_test"] == 16 and entry["tokens"] == doc["budget"]["tokens"] > 0
            assert doc["budget"]["steps"] == 3 and doc["budget"]["max_steps"] == 3
            assert doc["budget"]["examples"] == 3 * 4  # 3 steps of the table's batch_size 4
            assert not (folder / "checkpoints").exists()
    # encoder frozen: only the fresh head trains; the total is the job's encoder + that head
    assert docs[("tiny_cls", 1)]["model_params"]["trainable"] == CLS_HEAD
    reg_head = HIDDEN * HIDDEN + HIDDEN + HIDDEN + 1
    assert docs[("tiny_reg", 2)]["model_params"]["trainable"] == reg_head
    assert docs[("tiny_cls", 1)]["model_params"]["total"] == \
        result["model_params"]["total"] - NER_HEAD + CLS_HEAD
    # different seeds train different heads
    assert docs[("tiny_cls", 1)]["per_task"]["tiny_cls"]["metrics"] != \
        docs[("tiny_cls", 2)]["per_task"]["tiny_cls"]["metrics"] or \
        docs[("tiny_reg", 1)]["per_task"]["tiny_reg"]["metrics"] != \
        docs[("tiny_reg", 2)]["per_task"]["tiny_reg"]["metrics"]
    stamps = {k: heldout_dir(c.job_dir, *k).joinpath("heldout.json").stat().st_mtime_ns
              for k in docs}
    again = engine_job.run_job(job, c)  # best weights kept: rerun only re-tests the job
    assert again["test_results"] == result["test_results"]
    assert {k: heldout_dir(c.job_dir, *k).joinpath("heldout.json").stat().st_mtime_ns
            for k in docs} == stamps


def test_heldout_stop_resumes_without_retraining(env):
    model_path, _data_dir, ctx = env
    heldout = {**HELDOUT, "tasks": ["tiny_cls"], "train_mode": "head_and_adapter"}
    job = make_job(model_path, tasks=("tiny_ner",), max_steps=4, eval_every=4, adapter=LORA,
                   heldout=heldout)
    reference = engine_job.run_job(job, ctx("reference"))
    c = ctx("stopped")
    first = heldout_dir(c.job_dir, "tiny_cls", 1) / "heldout.json"
    c.should_stop = lambda: first.is_file()  # stop right after the first held-out seed
    with pytest.raises(JobInterrupted):
        engine_job.run_job(job, c)
    assert first.is_file() and not heldout_dir(c.job_dir, "tiny_cls", 2).exists()
    steps = []
    c.should_stop = lambda: False
    c.heartbeat = lambda info: steps.append(info.get("step"))
    resumed = engine_job.run_job(job, c)
    assert steps == [1, 2, 3]  # only the second seed's head trained, not the job again
    assert resumed["test_results"] == reference["test_results"]
    doc = json.loads((heldout_dir(c.job_dir, "tiny_cls", 2) / "heldout.json").read_text())
    ref = json.loads((heldout_dir(ctx("reference").job_dir, "tiny_cls", 2) / "heldout.json")
                     .read_text())
    assert doc["per_task"] == ref["per_task"]
    # head_and_adapter: the LoRA A/B train with the fresh head
    assert doc["model_params"]["trainable"] == 2 * LORA_PER_RANK + CLS_HEAD


# ------------------------------------------------------------------------------ the plan
RQ2_TEXT = """
[study]
name = "rq2"
seeds = [1, 2]

[defaults]
max_steps = 5
adapter = {r = 8, alpha = 16, target_modules = ["query", "value"]}

[heldout]
tasks = ["ncbi_disease", "s800"]
seeds = [1, 2]
max_steps = 20

[[experiments]]
name = "mt"
strategy = "multi_task"
models = ["minilm"]
task_sets = [["bc2gm", "gad"]]
heldout = true

[[experiments]]
name = "st"
strategy = "single_task"
models = ["minilm"]
tasks = ["bc2gm", "gad"]
adapter_match = "mt"
heldout = true

[[experiments]]
name = "plain"
strategy = "single_task"
models = ["minilm"]
tasks = ["gad"]
adapter = {r = 4}
"""


def test_plan_matches_single_task_ranks_to_the_multi_task_job(tmp_path):
    from transformers import AutoConfig

    from runner.study.models import resolve_model

    plan = build_plan(parse_manifest(RQ2_TEXT, "rq2.toml"), tmp_path,
                      encoder_shape=encoder_lora_shape)
    conf = AutoConfig.from_pretrained(resolve_model("minilm"))  # MiniLM-L6: hidden 384
    hidden = conf.hidden_size
    mt = {j.seed: j for j in plan.jobs if j.experiment == "mt"}
    heads_mt = head_parameters("bc2gm", hidden) + head_parameters("gad", hidden)
    encoder_target = lora_trainable(conf, ["query", "value"], 8)
    assert mt[1].config["adapter"] == {"method": "lora", "r": 8, "alpha": 16.0, "dropout": 0.1,
                                       "target_modules": ["query", "value"]}
    st = [j for j in plan.jobs if j.experiment == "st"]
    assert len(st) == 4
    for job in st:
        a = job.config["adapter"]
        m = a["matched_to"]
        assert m["experiment"] == "mt" and m["job_id"] == mt[job.seed].job_id
        # issue 23: matched on the encoder side (what reaches the held-out tasks): the same
        # encoder and modules give the shared adapter's rank, not a rank that absorbs the
        # multi-task heads (it was 11-13x larger); both counts recorded
        assert m["basis"] == "encoder" and a["r"] == 8 and m["relative_gap"] == 0
        assert m["target_encoder_trainable"] == m["encoder_trainable"] == encoder_target
        (task,) = job.tasks
        assert m["target_trainable"] == encoder_target + heads_mt
        assert m["trainable"] == encoder_target + head_parameters(task, hidden)
        assert a["alpha"] == pytest.approx(2.0 * a["r"])  # alpha / r kept from mt
    # heldout only where asked, and in the job's identity
    assert mt[1].config["heldout"] == {"tasks": ["ncbi_disease", "s800"], "seeds": [1, 2],
                                       "max_steps": 20, "max_train_examples": 1000,
                                       "max_eval_examples": None, "learning_rate": 1e-3,
                                       "train_mode": "head", "batch_size": 16}
    plain = [j for j in plan.jobs if j.experiment == "plain"]
    assert "heldout" not in plain[0].config and plain[0].config["adapter"]["r"] == 4
    without = RQ2_TEXT.replace("heldout = true\n", "", 1)
    other = build_plan(parse_manifest(without, "rq2.toml"), tmp_path,
                       encoder_shape=encoder_lora_shape)
    assert {j.job_id for j in other.jobs if j.experiment == "mt"}.isdisjoint(
        j.job_id for j in mt.values())


def test_head_parameters_equal_the_engine_heads():
    from transformers import BertConfig, BertModel

    from runner.data.tasks import get_task

    tasks = ["bc2gm", "gad", "hoc", "biosses", "chemprot"]
    encoder = BertModel(BertConfig(vocab_size=50, hidden_size=HIDDEN, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=64))
    model = MultiTaskModel(encoder, {t: get_task(t) for t in tasks})
    for t in tasks:
        assert head_parameters(t, HIDDEN) == sum(p.numel() for p in model.heads[t].parameters())


@pytest.mark.parametrize("change,needles", [
    (('models = ["minilm"]\ntasks = ["bc2gm", "gad"]',
      'models = ["minilm"]\ntasks = ["bc2gm", "gad"]\nadapter = {r = 2}'),
     ["experiments[1].adapter", "not allowed with adapter_match"]),
    (('adapter_match = "mt"', 'adapter_match = "mtt"'), ["no experiment named 'mtt'",
                                                         "did you mean 'mt'"]),
    (("max_steps = 20", 'train_mode = "adapter"'), ["heldout.train_mode", "expected one of"]),
    (("tasks = [\"ncbi_disease\", \"s800\"]", "tasks = [\"bc2gm\"]"),
     ["heldout.tasks[0]", "unknown held-out task"]),
    (("max_steps = 20", "max_step = 20"), ["heldout.max_step", "did you mean 'max_steps'"]),
])
def test_rq2_manifest_errors_are_one_line(change, needles):
    with pytest.raises(InputError) as info:
        parse_manifest(RQ2_TEXT.replace(*change), "rq2.toml")
    assert all(n in str(info.value) for n in needles), str(info.value)
    assert "\n" not in str(info.value)


def test_unloadable_model_config_fails_the_plan_naming_the_model(tmp_path):
    text = RQ2_TEXT.replace('[heldout]', '[models]\nmine = "/nonexistent/my-encoder"\n\n'
                            '[heldout]').replace('models = ["minilm"]', 'models = ["mine"]')
    with pytest.raises(InputError, match="my-encoder.*cannot be loaded offline"):
        build_plan(parse_manifest(text, "rq2.toml"), tmp_path, encoder_shape=encoder_lora_shape)


# Job ids of manifests written before adapters existed (computed at the commit before them,
# with the repository's data/SHA256SUMS): adding adapter and heldout support renames nothing.
# The last two (token-controlled) changed with issue 12, because what they compute did: an
# epoch cap of 20 instead of failing past 100, and their best validation weights tested.
# demo_before_issue12.toml is manifests/demo.toml as it was then (the demo now runs 3 seeds).
OLD_IDS = {
    "tests/assets/manifests/demo_before_issue12.toml": ["a7d05b9eaa6e", "ac500d5073b1", "54f06a2a8965", "c83a3e4289ec",
                            "a53ee6a6f638"],
    "tests/assets/manifests/small.toml": ["fe894daa5053", "b52d7bba44f2", "b58785d18793",
                                          "b8be40a48e5b", "dd4d0d145bf2"],
}


@pytest.mark.parametrize("path", sorted(OLD_IDS))
def test_existing_job_ids_are_unchanged(path):
    text = (ROOT / path).read_text(encoding="utf-8")
    if "warmup_steps" not in text:
        # issue 23: the default warm-up is now capped at 10% of a job's planned steps; these
        # 5-step jobs computed a 500-step warm-up then, which the explicit key still says
        # (and without it they are other computations, so other ids)
        changed = build_plan(parse_manifest(text, path), ROOT / "data",
                             encoder_shape=encoder_lora_shape)
        assert not set(j.job_id for j in changed.jobs) & set(OLD_IDS[path])
        text = text.replace("[defaults]\n", "[defaults]\nwarmup_steps = 500\n", 1)
    plan = build_plan(parse_manifest(text, path), ROOT / "data", encoder_shape=encoder_lora_shape)
    assert [j.job_id for j in plan.jobs] == OLD_IDS[path]
    assert all(j.config["adapter"] is None and "heldout" not in j.config for j in plan.jobs)


def test_compile_is_not_in_job_ids_and_a_no_op_on_cpu(env, tmp_path):
    from runner.ml.model import load_encoder

    model_path, _data_dir, ctx = env
    text = RQ2_TEXT.replace("max_steps = 5\n", "max_steps = 5\ncompile = true\n", 1)
    with_compile = build_plan(parse_manifest(text, "rq2.toml"), tmp_path,
                              encoder_shape=encoder_lora_shape)
    plain = build_plan(parse_manifest(RQ2_TEXT, "rq2.toml"), tmp_path,
                       encoder_shape=encoder_lora_shape)
    assert [j.job_id for j in with_compile.jobs] == [j.job_id for j in plain.jobs]
    assert with_compile.jobs[0].config["compile"] is True
    a = engine_job.run_job(make_job(model_path, max_steps=3, eval_every=3, compile=True),
                           ctx("compiled"))
    b = engine_job.run_job(make_job(model_path, max_steps=3, eval_every=3), ctx("plain"))
    assert a["test_results"] == b["test_results"]
    assert load_encoder(str(model_path)).config._attn_implementation == "sdpa"


def test_heldout_budget_is_the_tables_not_the_jobs_batch_size(env):
    """Multi-task jobs default to batch 8 and single-task ones to 16: the fresh heads must
    not inherit that, or single-task sources would get twice the held-out examples."""
    model_path, _data_dir, ctx = env
    table = {**HELDOUT, "tasks": ["tiny_cls"], "seeds": [1], "batch_size": 6}
    budgets = []
    for name, batch in (("b4", 4), ("b8", 8)):
        job = make_job(model_path, tasks=("tiny_ner",), max_steps=2, eval_every=2,
                       adapter=LORA, heldout=table, batch_size=batch)
        c = ctx(name)
        engine_job.run_job(job, c)
        doc = json.loads((heldout_dir(c.job_dir, "tiny_cls", 1) / "heldout.json").read_text())
        budgets.append(doc["budget"])
    assert budgets[0] == {**budgets[1], "tokens": budgets[0]["tokens"]}
    # 3 steps of the table's 6 (the 20-example epoch is 6 + 6 + 6 + 2, length-grouped)
    assert budgets[0]["batch_size"] == 6 and 3 * 2 < budgets[0]["examples"] <= 3 * 6


def test_adapter_match_without_the_encoder_shape_is_bad_input(tmp_path):
    """Planning imports no torch: the rank matching's encoder shape is handed over (the CLI
    hands runner.ml.lora.encoder_lora_shape); without it an adapter_match is refused, naming
    the experiment, not guessed."""
    with pytest.raises(InputError, match="adapter_match needs the encoder's LoRA shape") as err:
        build_plan(parse_manifest(RQ2_TEXT, "rq2.toml"), tmp_path)
    assert "adapter_match" in err.value.where
