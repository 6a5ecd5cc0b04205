"""A training job end to end on a tiny BERT (tests/runner/jobs.py): token counting,
token-controlled trimming, early stopping, kill -9 and resume bit for bit, failures, result
fields."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from runner.jobapi import JobContext, JobFailed, JobInterrupted
from runner.ml import batching
from runner.ml import checkpoint as ckpt
from runner.ml import train as engine_train
from runner.recipes import train_job as engine_job
from runner.study.config import TrainConfig
from tests.runner import jobs
from tests.runner.jobs import (
    EVALUATE,
    NER,
    SPECS,
    base_config,
    kill_and_resume,
    make_job,
    patch_data_side,
)

REPO = Path(__file__).resolve().parents[3]

tiny_model, env = jobs.tiny_model, jobs.env   # the shared fixtures

# ----------------------------------------------------------------------------- jobs
RESULT_KEYS = {"experiment_id", "experiment_type", "experiment", "study", "model", "model_name",
               "tokenizer", "seed", "tasks", "config", "dataset_stats", "model_params",
               "train_results", "test_results", "token_count", "tokens_per_task", "per_task",
               "validation_history", "provenance"}


def test_single_task_result_is_complete_and_tokens_exact(env):
    model_path, data_dir, ctx = env
    c = ctx()
    job = make_job(model_path, max_epochs=2, patience=100, eval_every=4)
    result = engine_job.run_job(job, c)
    json.dumps(result, allow_nan=False)
    assert RESULT_KEYS <= set(result)
    assert result["experiment_type"] == "single_task_baseline"
    # two full epochs, no early stopping: every training token exactly twice
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_path)
    train_df = pd.read_parquet(data_dir / "tiny_ner" / "train.parquet")
    per_epoch = int(batching.encode_split(NER, train_df, tok, 24).lengths.sum())
    assert result["token_count"] == 2 * per_epoch == result["tokens_per_task"]["tiny_ner"]
    assert isinstance(result["token_count"], int)
    tr = result["train_results"]
    assert tr["steps"] == 20 and tr["epochs_trained"] == 2.0 and tr["train_loss"] > 0
    assert set(result["test_results"]) >= {"eval_loss", "eval_f1", "eval_precision",
                                           "eval_recall"}
    pt = result["per_task"]["tiny_ner"]
    assert pt["stat_spec"] == {"kind": "counts"} and pt["n_test"] == 16
    assert pt["tokens"] == result["token_count"]
    preds = pd.read_parquet(c.job_dir / pt["predictions"])
    assert len(preds) == 16 and {"unit_id", "gold", "pred"} <= set(preds.columns)
    assert [h["step"] for h in result["validation_history"]] == [4, 8, 12, 16, 20]
    assert result["model_params"]["total"] == result["model_params"]["trainable"] > 0
    assert len(result["tokenizer"]) == 12
    prov = result["provenance"]
    assert prov["data_checksums"] == job.data_checksums and prov["torch"] == torch.__version__
    # run_job deletes nothing: the executor prunes to best/ once result.json is written
    assert sorted(p.name for p in (c.job_dir / "checkpoints").iterdir()) == [
        "best", "checkpoint-20"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_path_trains_and_resumes(env, monkeypatch, dtype):
    """The GPU's mixed-precision path (autocast; for fp16 the grad scaler: scale, unscale_,
    step, update, its state in the checkpoint) run on the CPU, which computes both dtypes:
    the job finishes with finite losses, records its precision, and an interrupted run
    resumes to the uninterrupted one's result."""
    from runner.recipes import heldout as engine_heldout

    model_path, _, ctx = env
    for module in (engine_train, engine_job, engine_heldout):
        monkeypatch.setattr(module, "autocast_dtype", lambda precision, device: dtype)
    scalers = []
    real_scaler = engine_train.make_grad_scaler

    def spy(device, enabled):
        scalers.append(enabled)
        return real_scaler(device, enabled)
    monkeypatch.setattr(engine_train, "make_grad_scaler", spy)
    job = make_job(model_path, max_epochs=2, eval_every=4, patience=100, checkpoint_every_s=0.0)
    whole = engine_job.run_job(job, ctx("whole"))
    assert whole["provenance"]["precision"] == str(dtype).replace("torch.", "")
    assert scalers[0] is (dtype is torch.float16)
    assert np.isfinite(whole["train_results"]["train_loss"])
    assert all(np.isfinite(h["metrics"]["tiny_ner"]["loss"]) for h in whole["validation_history"])

    calls = {"n": 0}

    def stop_at_7():
        calls["n"] += 1
        return calls["n"] == 7
    with pytest.raises(JobInterrupted):
        engine_job.run_job(job, ctx("split", should_stop=stop_at_7))
    resumed = engine_job.run_job(job, ctx("split"))
    assert resumed["token_count"] == whole["token_count"]
    assert resumed["validation_history"] == whole["validation_history"]
    assert resumed["test_results"] == whole["test_results"]


def test_early_stopping_restores_best_weights_for_the_test(env, monkeypatch):
    model_path, data_dir, ctx = env
    # the test split is the validation split, so test predictions must equal the validation
    # predictions of the best evaluation
    val = pd.read_parquet(data_dir / "tiny_ner" / "validation.parquet")
    val.to_parquet(data_dir / "tiny_ner" / "test.parquet")
    scores = iter([0.2, 0.5, 0.49, 0.5, 0.3, 0.9, 0.9])
    seen = []

    def scripted(spec, df, preds):
        metrics, frame = EVALUATE(spec, df, preds)
        seen.append(json.dumps(preds))
        if len(seen) <= 5:  # five validations, then the test
            metrics = {**metrics, "f1": next(scores)}
        return metrics, frame

    monkeypatch.setattr(engine_job, "evaluate", scripted)
    # the second 0.5 ties the best score with a higher validation loss: not an improvement
    script_losses(monkeypatch, [1.0, 0.9, 0.8, 0.95, 0.7])
    result = engine_job.run_job(make_job(model_path, max_epochs=10, eval_every=3), ctx())
    hist = result["validation_history"]
    assert [h["score"] for h in hist] == [0.2, 0.5, 0.49, 0.5, 0.3]  # 0.5 is no gain: patience
    assert result["train_results"]["stopped_early"] is True
    assert result["train_results"]["best_step"] == 6 and result["train_results"]["steps"] == 15
    assert len(seen) == 6 and seen[5] == seen[1]  # the test used step 6's weights
    assert seen[5] != seen[4]
    # the tokens seen when those weights were taken, not the patience evaluations after them
    assert result["tokens_at_best"] == hist[1]["tokens"] < result["token_count"]
    assert result["tokens_per_task_at_best"] == {"tiny_ner": hist[1]["tokens"]}
    assert result["test_weights"] == "best" and "parity" not in result


def script_losses(monkeypatch, losses):
    """Make the i-th validation report losses[i] as every task's validation loss."""
    original = engine_train.validate
    it = iter(losses)

    def validate(model, setup, dtype):
        metrics, score = original(model, setup, dtype)
        loss = next(it)
        return {t: {**m, "loss": loss} for t, m in metrics.items()}, score

    monkeypatch.setattr(engine_train, "validate", validate)


def test_a_score_plateau_with_falling_loss_keeps_training_and_moves_best(env, monkeypatch):
    """NER F1 stays 0.0 while the model still predicts only O; the falling validation loss
    breaks the tie, so patience does not stop the run and "best" is not the first evaluation."""
    model_path, _, ctx = env
    scores = iter([0.0, 0.0, 0.0, 0.0, 0.4, 0.4, 0.4])
    calls = []

    def scripted(spec, df, preds):
        metrics, frame = EVALUATE(spec, df, preds)
        calls.append(1)
        if len(calls) <= 7:
            metrics = {**metrics, "f1": next(scores)}
        return metrics, frame

    monkeypatch.setattr(engine_job, "evaluate", scripted)
    script_losses(monkeypatch, [0.9, 0.8, 0.7, 0.6, 0.5, 0.55, 0.6])
    result = engine_job.run_job(make_job(model_path, max_epochs=10, eval_every=3, patience=2),
                                ctx())
    hist = result["validation_history"]
    assert [h["score"] for h in hist] == [0.0, 0.0, 0.0, 0.0, 0.4, 0.4, 0.4]
    # 0.0 x4 with falling loss: each an improvement (without the tie-break, patience 2 would
    # stop the run at step 9 with step 3 as "best"); 0.4 at step 15 is the best; the two later
    # ties have a higher loss, so they count against patience and stop the run
    assert [h["step"] for h in hist] == [3, 6, 9, 12, 15, 18, 21]
    assert result["train_results"]["best_step"] == 15
    assert result["train_results"]["stopped_early"] is True


def test_multi_task_shares_and_per_task_results(env):
    model_path, _data_dir, ctx = env
    job = make_job(model_path, tasks=("tiny_ner", "tiny_cls"), strategy="multi_task",
                   max_epochs=2, patience=100, eval_every=10,
                   max_train_examples={"tiny_cls": 20})
    result = engine_job.run_job(job, ctx())
    assert result["experiment_type"] == "multi_task"
    assert result["token_count"] == sum(result["tokens_per_task"].values())
    assert result["dataset_stats"]["tiny_cls"]["train_samples"] == 20
    s = result["sampling"]
    assert sum(s["batches"].values()) == 30  # 2 epochs x (10 + 5) batches of 4
    assert s["batch_share"]["tiny_ner"] > s["batch_share"]["tiny_cls"] > 0
    assert sum(s["token_share"].values()) == pytest.approx(1.0)
    tr = result["test_results"]
    assert {"eval_tiny_ner_f1", "eval_tiny_cls_f1", "eval_primary_mean", "eval_loss"} <= set(tr)
    assert tr["eval_primary_mean"] == pytest.approx((tr["eval_tiny_ner_f1"] +
                                                     tr["eval_tiny_cls_f1"]) / 2)
    assert set(result["validation_history"][0]["metrics"]) == {"tiny_ner", "tiny_cls"}
    best = next(h for h in result["validation_history"]
                if h["step"] == result["train_results"]["best_step"])
    assert result["tokens_per_task_at_best"] == best["tokens_per_task"]
    assert sum(best["tokens_per_task"].values()) == best["tokens"] == result["tokens_at_best"]


@pytest.mark.parametrize("parity", ["total", "per_task"])
def test_token_controlled_reaches_target_past_max_epochs(env, parity):
    model_path, _data_dir, ctx = env
    target = 1237  # several epochs of the 40-sentence task (~10 tokens each), max_epochs 1
    ref = {"token_count": target if parity == "total" else 99999,
           "tokens_per_task": {"tiny_ner": target, "tiny_cls": 5}}
    job = make_job(model_path, strategy="token_controlled", depends_on=("f00dfeedbeef",),
                   parity=parity, max_epochs=1, eval_every=50)
    result = engine_job.run_job(job, ctx(dependency_results={"f00dfeedbeef": ref}))
    p = result["parity"]
    assert p["target_tokens"] == target == result["config"]["target_tokens"]
    assert p["mode"] == parity and p["reference_job"] == "f00dfeedbeef"
    longest = 24
    assert abs(result["token_count"] - target) <= longest
    assert p["achieved_tokens"] == result["token_count"]
    assert result["train_results"]["epochs_trained"] > 2  # went on past max_epochs = 1
    assert result["experiment_type"] == "token_controlled_baseline"
    assert result["control"] == {"kind": "repeat"}   # issue 26: the methodology's control


def test_token_controlled_stops_at_its_epoch_cap_and_records_the_shortfall(env):
    """A target beyond token_controlled_max_epochs passes: the job finishes (no JobFailed)
    after exactly that many epochs, its schedule planned for them, the shortfall recorded."""
    model_path, data_dir, ctx = env
    job = make_job(model_path, strategy="token_controlled", depends_on=("f00dfeedbeef",),
                   parity="total", eval_every=50, token_controlled_max_epochs=3)
    result = engine_job.run_job(job, ctx(dependency_results={"f00dfeedbeef": {
        "token_count": 10**6}}))
    per_epoch = tiny_tokens_per_epoch(model_path, data_dir)
    p = result["parity"]
    assert result["token_count"] == 3 * per_epoch == p["achieved_tokens"]
    assert p["reached"] is False and p["stopped_because"] == "epoch_cap"
    assert p["epoch_cap"] == 3 == result["config"]["token_controlled_max_epochs"]
    assert p["epochs_run"] == 3.0 == result["train_results"]["epochs_trained"]
    assert p["epochs_needed"] == pytest.approx(10**6 / per_epoch, abs=1e-3)
    assert p["relative_gap"] == pytest.approx(1 - 3 * per_epoch / 10**6)
    assert p["target"] == "total" and p["targets"] == {"total": 10**6, "best": None}
    assert result["train_results"]["steps"] == 30  # 3 epochs x 10 batches, as planned
    assert engine_train.epoch_cap(TrainConfig.from_dict({})) == 20  # the methodology's cap where none is given


def tiny_tokens_per_epoch(model_path, data_dir, task="tiny_ner", length=24) -> int:
    from transformers import AutoTokenizer
    df = pd.read_parquet(data_dir / task / "train.parquet")
    tok = AutoTokenizer.from_pretrained(model_path)
    return int(batching.encode_split(SPECS[task], df, tok, length).lengths.sum())


def test_token_controlled_tests_final_then_best_validation_weights(env, monkeypatch):
    """The methodology's rule (final weights) is the primary test; the best validation weights
    (no early stopping) are tested too, each with its own predictions."""
    model_path, data_dir, ctx = env
    val = pd.read_parquet(data_dir / "tiny_ner" / "validation.parquet")
    val.to_parquet(data_dir / "tiny_ner" / "test.parquet")  # test = validation: comparable
    seen = []

    def scripted(spec, df, preds):  # validation scores 0.3, 0.8, then 0.1: best at step 8
        metrics, frame = EVALUATE(spec, df, preds)
        seen.append(json.dumps(preds))
        return {**metrics, "f1": ([0.3, 0.8] + [0.1] * 99)[len(seen) - 1]}, frame

    monkeypatch.setattr(engine_job, "evaluate", scripted)
    ref = {"token_count": 1237, "tokens_at_best": 800, "tokens_per_task": {"tiny_ner": 1000},
           "tokens_per_task_at_best": {"tiny_ner": 600}}
    job = make_job(model_path, strategy="token_controlled", depends_on=("f00dfeedbeef",),
                   parity="total", eval_every=4, patience=1)
    result = engine_job.run_job(job, ctx(dependency_results={"f00dfeedbeef": ref}))
    hist = result["validation_history"]
    assert len(hist) >= 4 and hist[1]["score"] == 0.8  # patience 1 stops nothing here
    assert result["train_results"]["stopped_early"] is False
    assert result["test_weights"] == "final"
    assert result["token_count"] >= 1237 and result["parity"]["reached"] is True
    assert result["parity"]["stopped_because"] == "target_reached"
    assert result["parity"]["targets"] == {"total": 1237, "best": 800}
    pt = result["per_task"]["tiny_ner"]
    best = pt["best_weights"]
    assert best["step"] == hist[1]["step"] == result["train_results"]["best_step"] == 8
    assert best["tokens"] == hist[1]["tokens"] == result["tokens_at_best"]
    assert result["tokens_per_task_at_best"] == {"tiny_ner": hist[1]["tokens"]}
    assert best["predictions"] == "predictions/best_weights/tiny_ner.parquet"
    assert set(best["metrics"]) == set(pt["metrics"])
    assert (ctx().job_dir / best["predictions"]).is_file()
    # evaluate() calls: the validations, the final weights' test, the best weights' test
    assert len(seen) == len(hist) + 2
    assert seen[-2] == seen[len(hist) - 1]  # primary test = the final weights
    assert seen[-1] == seen[1] != seen[-2]   # second test = step 8's weights


@pytest.mark.parametrize("parity,reference,expected", [
    ("total", {"token_count": 900, "tokens_at_best": 500}, {"total": 900, "best": 500}),
    ("per_task", {"token_count": 900, "tokens_per_task": {"tiny_ner": 700, "b": 200},
                  "tokens_per_task_at_best": {"tiny_ner": 400, "b": 100}},
     {"total": 700, "best": 400}),
    # a reference written before tokens_at_best: read from its best validation entry
    ("total", {"token_count": 900, "train_results": {"best_step": 5},
               "validation_history": [{"step": 5, "tokens": 300}, {"step": 9, "tokens": 900}]},
     {"total": 900, "best": 300}),
    ("per_task", {"token_count": 900, "tokens_per_task": {"tiny_ner": 700},
                  "train_results": {"best_step": 5},
                  "validation_history": [{"step": 5, "tokens": 300}]},
     {"total": 700, "best": None}),
])
def test_parity_targets_total_and_best(tmp_path, parity, reference, expected):
    job = replace(make_job(tmp_path, strategy="token_controlled", depends_on=("r",),
                           parity=parity), config=base_config(parity_target="best"))
    ctx = JobContext(job_dir=tmp_path, data_dir=tmp_path, dependency_results={"r": reference})
    assert engine_job.parity_targets(job, ctx) == expected
    if expected["best"] is None:
        with pytest.raises(JobFailed, match="predates tokens_per_task_at_best"):
            engine_job.token_target(job, ctx)
    else:
        assert engine_job.token_target(job, ctx) == (expected["best"], "best", expected)
        total = replace(job, config=base_config())  # parity_target absent: "total"
        assert engine_job.token_target(total, ctx)[0] == expected["total"]


def test_each_task_is_cut_at_its_manifest_length_and_the_cuts_are_counted(env):
    """max_length 512 is capped by the tiny model's 64 positions; max_length_per_task lowers
    one task to 8; result.json records both lengths and the examples each one cut."""
    model_path, data_dir, ctx = env
    job = make_job(model_path, tasks=("tiny_ner", "tiny_cls"), strategy="multi_task",
                   max_length=512, max_length_per_task={"tiny_cls": 8}, max_steps=2,
                   eval_every=2)
    result = engine_job.run_job(job, ctx())
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_path)
    for task, length in (("tiny_ner", 64), ("tiny_cls", 8)):
        pt = result["per_task"][task]
        counts = {split: batching.encode_split(
            SPECS[task], pd.read_parquet(data_dir / task / f"{split}.parquet"), tok, 10_000)
            .lengths for split in ("train", "test")}
        assert pt["max_length"] == length
        assert pt["truncation"] == {
            "max_length": length,
            "train_truncated": int((counts["train"] > length).sum()), "train_examples": 40,
            "test_truncated": int((counts["test"] > length).sum()), "test_examples": 16}
    assert result["per_task"]["tiny_cls"]["truncation"]["train_truncated"] > 0


def test_chemprot_at_max_length_512_keeps_what_the_task_declaration_used_to_cut(
        tmp_path, monkeypatch):
    """The real ChemProt task and MiniLM (512 positions): max_length = 512 is what the job
    uses (the declaration's former 256 cut every pair sentence longer than that)."""
    from transformers import AutoTokenizer

    from runner.data.tasks import get_task
    from runner.study.models import resolve_model

    minilm = resolve_model("minilm", {})
    spec, tok = get_task("chemprot"), AutoTokenizer.from_pretrained(minilm)
    data = tmp_path / "data"
    for split, n in (("train", 8), ("validation", 4), ("test", 4)):
        df = pd.read_parquet(REPO / "data" / "chemprot" / f"{split}.parquet")
        longest = df.assign(n=df["text"].str.len()).nlargest(n // 2, "n").drop(columns="n")
        (data / "chemprot").mkdir(parents=True, exist_ok=True)
        pd.concat([longest, df.head(n - len(longest))]).reset_index(drop=True).to_parquet(
            data / "chemprot" / f"{split}.parquet")
    monkeypatch.setattr(engine_job, "load_split", lambda d, task, split: pd.read_parquet(
        Path(d) / task / f"{split}.parquet"))
    full = {s: batching.encode_split(spec, pd.read_parquet(data / "chemprot" / f"{s}.parquet"),
                                     tok, 100_000).lengths for s in ("train", "test")}
    assert (full["train"] > 256).sum() > 0 and full["train"].max() <= 512
    torch.set_num_threads(1)
    for lengths, cut in (({}, 512), ({"chemprot": 256}, 256)):
        job = replace(make_job(Path(minilm), tasks=("chemprot",), max_length=512,
                               max_length_per_task=lengths, max_steps=1, eval_every=1),
                      job_id=f"chemprot{cut}")
        result = engine_job.run_job(job, JobContext(job_dir=tmp_path / str(cut),
                                                    data_dir=data))
        pt = result["per_task"]["chemprot"]
        assert pt["max_length"] == cut == pt["truncation"]["max_length"]
        assert pt["truncation"]["train_truncated"] == int((full["train"] > cut).sum())
        assert pt["truncation"]["test_truncated"] == int((full["test"] > cut).sum())
        assert pt["truncation"]["train_examples"] == 8


def test_nan_loss_fails_with_one_line_reason(env):
    model_path, data_dir, ctx = env
    df = pd.read_parquet(data_dir / "tiny_reg" / "train.parquet")
    df.loc[:, "label"] = float("nan")
    df.to_parquet(data_dir / "tiny_reg" / "train.parquet")
    with pytest.raises(JobFailed) as err:
        engine_job.run_job(make_job(model_path, tasks=("tiny_reg",)), ctx())
    assert "loss is nan" in str(err.value) and "\n" not in str(err.value)


def test_missing_model_fails(env, tmp_path):
    _, _, ctx = env
    with pytest.raises(JobFailed, match="model not found"):
        engine_job.run_job(make_job(tmp_path / "no-such-model"), ctx())


def test_should_stop_checkpoints_and_resume_is_exact(env):
    model_path, _data_dir, ctx = env
    job = make_job(model_path, tasks=("tiny_ner", "tiny_cls"), strategy="multi_task",
                   max_epochs=2, eval_every=4, patience=100)
    reference = engine_job.run_job(job, ctx("reference"))
    calls = {"n": 0}

    def stop_after_7():
        calls["n"] += 1
        return calls["n"] == 7
    c = ctx("interrupted", should_stop=stop_after_7)
    with pytest.raises(JobInterrupted):
        engine_job.run_job(job, c)
    assert [p.name for _, p in ckpt.list_checkpoints(c.job_dir / "checkpoints")] == \
        ["checkpoint-7"]
    resumed = engine_job.run_job(job, c)
    assert resumed["test_results"] == reference["test_results"]
    assert resumed["tokens_per_task"] == reference["tokens_per_task"]
    assert resumed["validation_history"] == reference["validation_history"]
    assert resumed["train_results"]["train_loss"] == reference["train_results"]["train_loss"]


def test_a_checkpoint_without_per_task_tokens_restarts_the_job(env, caplog):
    """A checkpoint of the runner before tokens_per_task_at_best (validation entries without
    tokens_per_task) is refused: the job starts over and computes what an uninterrupted one
    does, tokens at its best checkpoint included."""
    from mtl_contract.files import atomic_write_json, sha256_file

    model_path, _data_dir, ctx = env
    job = make_job(model_path, max_epochs=2, eval_every=4, patience=100)
    reference = engine_job.run_job(job, ctx("reference"))
    calls = {"n": 0}

    def stop_after_9():
        calls["n"] += 1
        return calls["n"] == 9
    c = ctx("old", should_stop=stop_after_9)
    with pytest.raises(JobInterrupted):
        engine_job.run_job(job, c)
    (_, path), = ckpt.list_checkpoints(c.job_dir / "checkpoints")
    progress = json.loads((path / "progress.json").read_text())
    assert progress["validation_history"]
    for entry in progress["validation_history"]:
        del entry["tokens_per_task"]  # as the runner before it wrote them
    (path / "progress.json").write_text(json.dumps(progress))
    atomic_write_json(path / "checksums.json", {n: sha256_file(path / n) for n in ckpt.FILES})
    with caplog.at_level(logging.WARNING):
        resumed = engine_job.run_job(job, ctx("old"))
    assert "restarting the job from scratch" in caplog.text and "tokens per task" in caplog.text
    for key in ("test_results", "validation_history", "tokens_at_best",
                "tokens_per_task_at_best"):
        assert resumed[key] == reference[key], key


# ----------------------------------------------------------------------------- kill -9
def child_main(model_path: str, data_dir: str, job_dir: str, out: str) -> None:
    """Run one job in a subprocess (see the kill test); write its result to ``out``."""
    torch.set_num_threads(1)
    patch_data_side(engine_job, Path(data_dir))
    job = make_job(Path(model_path), tasks=("tiny_ner", "tiny_cls"), strategy="multi_task",
                   max_epochs=4, eval_every=6, patience=100, checkpoint_every_s=0.0)
    # the heartbeat runs once per step: a short sleep spreads the run out for the kill to land
    ctx = JobContext(job_dir=Path(job_dir), data_dir=Path(data_dir),
                     heartbeat=lambda progress: time.sleep(0.02))
    result = engine_job.run_job(job, ctx)
    Path(out).write_text(json.dumps(result))


def test_kill_minus_9_and_resume_equals_uninterrupted(env, tmp_path):
    model_path, data_dir, _ = env
    a, b = kill_and_resume("tests.runner.recipes.test_train_job:child_main", model_path,
                           data_dir, tmp_path, 120, (0.0, 0.6))
    victim_dir = tmp_path / "victim"
    assert b["test_results"] == a["test_results"]
    assert b["token_count"] == a["token_count"] and b["tokens_per_task"] == a["tokens_per_task"]
    assert b["validation_history"] == a["validation_history"]
    assert b["per_task"]["tiny_ner"]["metrics"] == a["per_task"]["tiny_ner"]["metrics"]
    pa = pd.read_parquet(tmp_path / "ref" / "predictions" / "tiny_ner.parquet")
    pb = pd.read_parquet(victim_dir / "predictions" / "tiny_ner.parquet")
    pd.testing.assert_frame_equal(pa, pb)


def test_result_records_the_schedule_a_short_job_ran(env):
    """Issue 23: 64 rows at batch 16 for 10 epochs plan 40 steps; the default warm-up is 10% of
    them (not 500) and the learning rate reaches the configured peak."""
    from tests.runner.jobs import make_frames

    model_path, data_dir, ctx = env
    make_frames(64, 1)["tiny_reg"].to_parquet(data_dir / "tiny_reg" / "train.parquet")
    job = make_job(model_path, tasks=("tiny_reg",), batch_size=16, max_epochs=10,
                   eval_every=10, patience=100, learning_rate=2e-5, warmup_steps=500,
                   warmup_cap=0.1)
    tr = engine_job.run_job(job, ctx())["train_results"]
    assert (tr["planned_steps"], tr["steps"], tr["examples_per_step"]) == (40, 40, 16)
    assert (tr["warmup_steps"], tr["warmup_rule"]) == (4, "default")
    assert tr["peak_learning_rate"] == pytest.approx(2e-5)
