"""Shared by the ml/ and recipes/ tests: three tiny tasks, a tiny BERT (hidden 32, 2 layers)
with a WordPiece tokenizer trained on the fly, a job of them, and the ``env`` fixture that
points runner.recipes.train_job's data seams at them."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from runner.data.tasks.spec import TaskSpec
from runner.jobapi import JobContext
from runner.recipes import train_job as engine_job
from runner.study.plan import Job
from runner.study.strategies import experiment_type
from tests.helpers import build_tiny_bert

NER = TaskSpec(name="tiny_ner", kind="ner", labels=("O", "B", "I"), text_fields=("tokens",),
               label_field="tags", primary_metric="f1",
               metrics=("f1", "precision", "recall"), held_out=False, source="synthetic",
               stat_kind="counts")
CLS = TaskSpec(name="tiny_cls", kind="classification", labels=("0", "1"), text_fields=("text",),
               label_field="label", primary_metric="f1",
               metrics=("f1", "accuracy"), held_out=False, source="synthetic", scored=("1",),
               stat_kind="classes")
REG = TaskSpec(name="tiny_reg", kind="regression", labels=(), text_fields=("text_1", "text_2"),
               label_field="label", primary_metric="pearson",
               metrics=("pearson", "spearman"), held_out=False, source="synthetic",
               stat_kind="pairs")
SPECS = {s.name: s for s in (NER, CLS, REG)}

FILLER = ["the", "of", "a", "in", "cells", "protein", "was", "were", "expression", "binding", "human", "cell", "and", "to"]
GENES = ["p53", "brca1", "il2", "tnf", "egfr", "kras"]


def make_frames(n: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Synthetic but learnable: genes are entities (B, then I for a following 'kinase')."""
    rng = random.Random(seed)
    ner, cls, reg = [], [], []
    for i in range(n):
        words, tags = [], []
        for _ in range(rng.randint(3, 14)):
            if rng.random() < 0.2:
                words.append(rng.choice(GENES)); tags.append("B")
                if rng.random() < 0.5:
                    words.append("kinase"); tags.append("I")
            else:
                words.append(rng.choice(FILLER)); tags.append("O")
        ner.append({"id": f"s{i}", "tokens": words, "tags": tags})
        positive = any(t == "B" for t in tags)
        cls.append({"id": f"c{i}", "document_id": f"d{i}", "text": " ".join(words),
                    "label": "1" if positive else "0"})
        reg.append({"id": f"r{i}", "text_1": " ".join(words), "text_2": " ".join(words[:3]),
                    "label": float(sum(t == "B" for t in tags))})
    return {"tiny_ner": pd.DataFrame(ner), "tiny_cls": pd.DataFrame(cls),
            "tiny_reg": pd.DataFrame(reg)}


def build_tiny_model(path: Path) -> Path:
    return build_tiny_bert(
        path, (" ".join(r) for r in make_frames(200, seed=9)["tiny_ner"]["tokens"]))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_bert"))


def base_config(**overrides) -> dict:
    cfg = {"learning_rate": 3e-3, "warmup_steps": 2, "weight_decay": 0.01, "max_length": 24,
           "batch_size": 4, "grad_accumulation": 1, "max_epochs": 3, "eval_every": 5,
           "patience": 3, "min_delta": 1e-4, "max_train_examples": {}, "max_eval_examples": None,
           "checkpoint_every_s": 300.0, "precision": "auto", "sampling": "proportional",
           "temperature": 1.0, "examples_cap": None, "max_steps": None, "adapter": None}
    cfg.update(overrides)
    return cfg


def make_job(model_path: Path, tasks=("tiny_ner",), strategy="single_task", seed=1,
             depends_on=(), parity=None, **cfg) -> Job:
    etype = experiment_type(strategy)
    return Job(job_id="abcdef012345", study="unit", experiment=strategy, strategy=strategy,
               experiment_type=etype, model="tiny", model_name=str(model_path),
               tasks=tuple(tasks), seed=seed, config=base_config(**cfg),
               depends_on=tuple(depends_on), parity=parity,
               data_checksums={"tiny_ner/train.parquet": "0" * 64})


def write_data(data_dir: Path, n_train=40, n_eval=16) -> None:
    for split, n, seed in (("train", n_train, 1), ("validation", n_eval, 2), ("test", n_eval, 3)):
        for task, df in make_frames(n, seed).items():
            (data_dir / task).mkdir(parents=True, exist_ok=True)
            df.to_parquet(data_dir / task / f"{split}.parquet")


from runner.ml.metrics import evaluate as EVALUATE


def patch_data_side(target, data_dir: Path) -> None:
    """Point the engine's seams at the synthetic tasks (set attributes on runner.recipes.train_job)."""
    target.get_task = lambda name: SPECS[name]
    target.load_split = lambda d, task, split: pd.read_parquet(Path(d) / task / f"{split}.parquet")
    target.evaluate = EVALUATE


@pytest.fixture
def env(tmp_path, monkeypatch, tiny_model):
    data_dir = tmp_path / "data"
    write_data(data_dir)
    monkeypatch.setattr(engine_job, "get_task", lambda name: SPECS[name])
    monkeypatch.setattr(engine_job, "load_split", lambda d, task, split: pd.read_parquet(
        Path(d) / task / f"{split}.parquet"))
    monkeypatch.setattr(engine_job, "evaluate", EVALUATE)
    torch.set_num_threads(1)

    def ctx(name="job", **kw):
        job_dir = tmp_path / name
        job_dir.mkdir(exist_ok=True)
        return JobContext(job_dir=job_dir, data_dir=data_dir, **kw)
    return tiny_model, data_dir, ctx


def kill_after_first_checkpoint(victim, checkpoints: Path, timeout_s: float,
                                jitter_s: tuple[float, float]) -> None:
    """SIGKILL the job process ``victim`` at a random moment (``jitter_s`` seconds) after its
    first checkpoint appears under ``checkpoints``; the test fails if it ends first."""
    import os
    import signal
    import time

    from runner.ml import checkpoint as ckpt

    deadline = time.monotonic() + timeout_s
    while not ckpt.list_checkpoints(checkpoints):
        assert victim.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(random.uniform(*jitter_s))
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()


def python_child(function: str, args: list[str]) -> subprocess.Popen:
    """A ``python -c`` process calling ``function`` ("tests.module:name") with ``args``, from
    the repository root with one torch thread (the kill -9 tests' jobs)."""
    import os
    import sys

    module, name = function.split(":")
    code = f"import sys; from {module} import {name}; {name}(*sys.argv[1:])"
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=repo, env=env)


def kill_and_resume(function: str, model_path: Path, data_dir: Path, tmp_path: Path,
                    timeout_s: float, jitter_s: tuple[float, float], at_kill=None):
    """One job (``function`` of :func:`python_child`, called with model, data, job folder and
    result file) run to its end in one child (``tmp_path/ref``) and, at the same time, in
    another (``tmp_path/victim``) SIGKILLed after its first checkpoint (``at_kill(victim
    folder)`` is called then) and run again; (uninterrupted result, resumed result)."""
    import json

    ref_out, out = tmp_path / "ref.json", tmp_path / "resumed.json"
    ref = python_child(function, [str(model_path), str(data_dir), str(tmp_path / "ref"),
                                  str(ref_out)])
    victim_dir = tmp_path / "victim"
    args = [str(model_path), str(data_dir), str(victim_dir), str(out)]
    kill_after_first_checkpoint(python_child(function, args), victim_dir / "checkpoints",
                                timeout_s, jitter_s)
    assert not out.exists(), "the job finished before the kill; make it longer"
    if at_kill is not None:
        at_kill(victim_dir)
    resumed = python_child(function, args)
    assert resumed.wait(timeout=300) == 0 and ref.wait(timeout=300) == 0
    return json.loads(ref_out.read_text()), json.loads(out.read_text())


def stop_after(n: int):
    """A ``should_stop`` that says yes on its ``n``-th call (the loop asks once per step)."""
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] == n
    return should_stop


def child_job(module: str, args: list[str]) -> subprocess.Popen:
    """``module.child_main(*args)`` in a subprocess of one thread (the kill -9 tests)."""
    return python_child(f"{module}:child_main", args)
