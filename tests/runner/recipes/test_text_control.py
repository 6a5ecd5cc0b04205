"""The text-matched control (issue 26): a token-controlled job that replays its multi-task
job's batches with the other tasks fed as masked-LM text -- parity by construction, tokens per
source task, the masked-LM head recorded, exact resume (should_stop and kill -9)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from runner.jobapi import JobContext, JobInterrupted
from runner.ml.batching import IGNORE_INDEX
from runner.ml.mlm import MaskSpec, mask_tokens
from runner.recipes import train_job as engine_job
from tests.runner import jobs
from tests.runner.jobs import kill_after_first_checkpoint, make_job, patch_data_side

tiny_model, env = jobs.tiny_model, jobs.env   # the shared fixtures

MT_ID = "feedf00dbeef"
SET = ("tiny_ner", "tiny_cls")
# what the plan copies from the multi-task job (runner.study.plan.text_control_config)
SHARED = {"max_epochs": 2, "max_train_examples": {"tiny_cls": 20}}


def mt_job(model_path):
    return make_job(model_path, tasks=SET, strategy="multi_task", patience=100,
                    eval_every=10, **SHARED)


def text_job(model_path, task="tiny_ner", **cfg):
    control = {"kind": "text", "mask_probability": 0.15, "tasks": list(SET)}
    return make_job(model_path, tasks=(task,), strategy="token_controlled",
                    depends_on=(MT_ID,), parity="total", control=control,
                    parity_target="total", **{"eval_every": 10, **SHARED, **cfg})


@pytest.mark.parametrize("task", SET)
def test_text_control_matches_every_task_of_its_multi_task_job(env, task):
    """Parity by construction: the same batches of every task, so the same real tokens per
    task as the multi-task job (gap 0), its own task supervised, the other masked."""
    model_path, _data_dir, ctx = env
    mt = engine_job.run_job(mt_job(model_path), ctx("mt"))
    result = engine_job.run_job(text_job(model_path, task),
                                ctx(task, dependency_results={MT_ID: mt}))
    assert result["tokens_per_task"] == mt["tokens_per_task"]
    assert result["token_count"] == mt["token_count"]
    p = result["parity"]
    assert p["reached"] and p["relative_gap"] == 0.0 and p["epoch_cap"] is None
    assert all(v["relative_gap"] == 0.0 for v in p["per_task"].values())
    assert result["train_results"]["steps"] == mt["train_results"]["steps"]
    other = next(t for t in SET if t != task)
    c = result["control"]
    assert c["kind"] == "text" and c["stream_tasks"] == [other]
    assert c["stream_tokens_per_task"] == {other: mt["tokens_per_task"][other]}
    # ~15% of the stream's tokens without [CLS] / [SEP], at least one per batch
    masked, stream = c["masked_tokens_per_task"][other], mt["tokens_per_task"][other]
    assert c["stream_batches"] <= masked < 0.3 * stream
    assert c["mlm_loss_mean"] > 0
    assert c["mlm_head"]["source"] == "initialised"   # the tiny BERT is saved without one
    assert c["mlm_head"]["decoder"] == "tied to the input embeddings"
    assert list(result["per_task"]) == [task]          # tested on its own task only
    assert set(result["validation_history"][0]["metrics"]) == {task}
    assert result["config"]["control"]["tasks"] == list(SET)
    # its kept weights evaluate as a plain task model (runner evaluate, RQ3): no MLM head
    from runner.ml import checkpoint as ckpt
    from runner.recipes.quantized_eval import rebuild_model
    _meta, state = ckpt.load_best(ckpt.checkpoints_dir(ctx(task).job_dir))
    assert any(k.startswith("mlm_head.") for k in state)
    model = rebuild_model(text_job(model_path, task), {task: jobs.SPECS[task]}, state)
    assert not hasattr(model, "mlm_head")


def test_a_pretrained_masked_lm_head_is_used(env, tmp_path):
    """A checkpoint with a masked-LM head: the job starts from it (recorded "pretrained")."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer, BertForMaskedLM

    from runner.ml.mlm import attach_mlm_head
    from runner.ml.model import build_model
    model_path, _data_dir, _ctx = env
    with_head = tmp_path / "with_head"
    torch.manual_seed(3)
    mlm = BertForMaskedLM.from_pretrained(model_path)
    with torch.no_grad():
        mlm.cls.predictions.transform.dense.weight.fill_(0.5)
    mlm.save_pretrained(with_head)
    AutoTokenizer.from_pretrained(model_path).save_pretrained(with_head)
    model = build_model(str(with_head), {"tiny_ner": jobs.NER})
    info = attach_mlm_head(model, str(with_head))
    assert info["source"] == "pretrained" and info["initialised_keys"] == []
    assert torch.all(model.mlm_head.predictions.transform.dense.weight == 0.5)
    assert model.mlm_head.predictions.decoder.weight is \
        model.encoder.get_input_embeddings().weight
    assert AutoModelForMaskedLM  # imported from the same place the runner loads it


def test_masking_is_berts_and_follows_the_generator():
    spec = MaskSpec(mask_id=4, special_ids=(0, 2, 3), vocab_size=100, probability=0.15)
    ids = torch.randint(5, 100, (64, 200))
    attention = torch.ones_like(ids)
    attention[:, 150:] = 0
    ids[:, 150:] = 0                     # padding
    ids[:, 0], ids[:, 149] = 2, 3        # [CLS] ... [SEP]
    torch.manual_seed(7)
    masked, labels = mask_tokens(ids, attention, spec)
    torch.manual_seed(7)
    again, labels_again = mask_tokens(ids, attention, spec)
    assert torch.equal(masked, again) and torch.equal(labels, labels_again)
    selected = labels != IGNORE_INDEX
    assert not selected[:, 0].any() and not selected[:, 149:].any()   # special and padding
    rate = float(selected.sum()) / (64 * 148)
    assert 0.13 < rate < 0.17
    assert torch.equal(labels[selected], ids[selected])
    to_mask = float((masked[selected] == 4).sum()) / float(selected.sum())
    kept = float((masked[selected] == ids[selected]).sum()) / float(selected.sum())
    assert 0.76 < to_mask < 0.84 and 0.07 < kept < 0.14
    assert torch.equal(masked[~selected], ids[~selected])
    # a batch too short to draw any selection still masks one token
    short = torch.tensor([[2, 50, 3]])
    for seed in range(40):
        torch.manual_seed(seed)
        _, lab = mask_tokens(short, torch.ones_like(short), spec)
        assert int((lab != IGNORE_INDEX).sum()) == 1 and lab[0, 1] == 50


def test_should_stop_and_resume_is_exact(env):
    model_path, _data_dir, ctx = env
    mt = engine_job.run_job(mt_job(model_path), ctx("mt"))
    job = text_job(model_path, eval_every=4)
    deps = {MT_ID: mt}
    reference = engine_job.run_job(job, ctx("reference", dependency_results=deps))
    calls = {"n": 0}

    def stop_after_7():
        calls["n"] += 1
        return calls["n"] == 7
    c = ctx("interrupted", should_stop=stop_after_7, dependency_results=deps)
    with pytest.raises(JobInterrupted):
        engine_job.run_job(job, c)
    resumed = engine_job.run_job(job, c)
    for key in ("test_results", "tokens_per_task", "validation_history", "control"):
        assert resumed[key] == reference[key], key
    assert resumed["train_results"]["train_loss"] == reference["train_results"]["train_loss"]


# ----------------------------------------------------------------------------- kill -9
def child_main(model_path: str, data_dir: str, job_dir: str, out: str, mt_file: str) -> None:
    """Run the text control in a subprocess (see the kill test); its result to ``out``."""
    torch.set_num_threads(1)
    patch_data_side(engine_job, Path(data_dir))
    job = text_job(Path(model_path), max_epochs=4, eval_every=6, checkpoint_every_s=0.0)
    ctx = JobContext(job_dir=Path(job_dir), data_dir=Path(data_dir),
                     dependency_results={MT_ID: json.loads(Path(mt_file).read_text())},
                     heartbeat=lambda progress: time.sleep(0.02))
    Path(out).write_text(json.dumps(engine_job.run_job(job, ctx)))


def _child(args: list[str]):
    return jobs.child_job("tests.runner.recipes.test_text_control", args)


def test_kill_minus_9_and_resume_equals_uninterrupted(env, tmp_path):
    model_path, data_dir, ctx = env
    mt = engine_job.run_job(make_job(model_path, tasks=SET, strategy="multi_task",
                                     patience=100, eval_every=6, max_epochs=4,
                                     max_train_examples={"tiny_cls": 20}), ctx("mt"))
    mt_file = tmp_path / "mt.json"
    mt_file.write_text(json.dumps(mt))
    ref_out, out = tmp_path / "ref.json", tmp_path / "resumed.json"
    common = [str(model_path), str(data_dir)]
    ref = _child([*common, str(tmp_path / "ref"), str(ref_out), str(mt_file)])
    victim_dir = tmp_path / "victim"
    victim = _child([*common, str(victim_dir), str(out), str(mt_file)])
    kill_after_first_checkpoint(victim, victim_dir / "checkpoints", 120, (0.0, 0.6))
    assert not out.exists(), "the job finished before the kill; make it longer"
    resumed = _child([*common, str(victim_dir), str(out), str(mt_file)])
    assert resumed.wait(timeout=300) == 0 and ref.wait(timeout=300) == 0
    a, b = json.loads(ref_out.read_text()), json.loads(out.read_text())
    assert a["tokens_per_task"] == mt["tokens_per_task"]   # parity, again
    for key in ("test_results", "token_count", "tokens_per_task", "validation_history",
                "control"):
        assert b[key] == a[key], key
    assert b["train_results"]["train_loss"] == a["train_results"]["train_loss"]
    pa = pd.read_parquet(tmp_path / "ref" / "predictions" / "tiny_ner.parquet")
    pb = pd.read_parquet(victim_dir / "predictions" / "tiny_ner.parquet")
    pd.testing.assert_frame_equal(pa, pb)
