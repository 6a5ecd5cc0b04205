"""``--workers auto|N``: several worker processes on one machine share one ledger.

Stand-in jobs (tests/assets/manifests/standin_job.py) prove "each job exactly once"; one
test runs the real engine on a tiny BERT (hidden 32, 2 layers, WordPiece vocabulary trained
on the fly from the shipped data) through ``python -m runner --workers 2``.  The tiny study
helpers here are shared with test_ray.py and test_kaggle.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from runner.cli.run import training_job
from runner.errors import InputError
from runner.orchestrate.local import run_plan
from runner.orchestrate.workers import (
    parse_workers,
    plan_workers,
    run_workers,
    usable_cores,
    visible_gpus,
)
from runner.study.manifest import load_manifest
from runner.study.plan import build_plan
from tests.fake_gpu import fake_cuda
from tests.helpers import build_tiny_bert as tiny_bert

ROOT = Path(__file__).resolve().parents[3]
ASSETS = ROOT / "tests/assets/manifests"
DATA = ROOT / "data"
SMALL = ASSETS / "small.toml"
WIDE = ASSETS / "wide.toml"
STANDIN = [sys.executable, str(ASSETS / "standin_job.py")]
sys.path.insert(0, str(ASSETS))
from standin_job import standin_job

# Fields of an engine result that do not depend on when or where it ran.
STABLE_KEYS = ("experiment_id", "experiment_type", "tasks", "seed", "config", "dataset_stats",
               "model_params", "test_results", "token_count", "tokens_per_task", "per_task",
               "validation_history", "parity", "sampling", "tokenizer")


# ------------------------------------------------------------------ shared helpers
def events(log: Path) -> tuple[Counter, Counter]:
    lines = log.read_text().splitlines() if log.exists() else []
    return (Counter(ln.split()[1] for ln in lines if ln.startswith("start")),
            Counter(ln.split()[1] for ln in lines if ln.startswith("finish")))


def results(folder: Path, plan) -> dict[str, dict]:
    return {j.job_id: json.loads((folder / j.job_id / "result.json").read_text())
            for j in plan.jobs if (folder / j.job_id / "result.json").exists()}


def stable(result: dict) -> dict:
    """An engine result without timings and provenance (those differ run to run)."""
    out = {k: result.get(k) for k in STABLE_KEYS}
    out["train_results"] = {k: v for k, v in result["train_results"].items()
                            if k not in ("train_runtime", "train_samples_per_second")}
    return out


def assert_same_engine_results(a: Path, b: Path, plan) -> None:
    ra, rb = results(a, plan), results(b, plan)
    assert set(ra) == set(rb) == {j.job_id for j in plan.jobs}
    for jid in ra:
        assert stable(ra[jid]) == stable(rb[jid]), jid
        for task in ra[jid]["tasks"]:
            pd.testing.assert_frame_equal(
                pd.read_parquet(a / jid / "predictions" / f"{task}.parquet"),
                pd.read_parquet(b / jid / "predictions" / f"{task}.parquet"))


def build_tiny_bert(path: Path, data_dir: Path = DATA) -> Path:
    """The tiny BERT with a 300-piece vocabulary trained on the shipped bc2gm + gad text."""
    corpus = [" ".join(t) for t in pd.read_parquet(data_dir / "bc2gm/train.parquet")
              ["tokens"].head(400)]
    corpus += list(pd.read_parquet(data_dir / "gad/train.parquet")["text"].head(400))
    return tiny_bert(path, corpus, vocab_size=300)


def tiny_study(folder: Path, model: Path, *, max_train: int = 120, max_epochs: int = 3,
               checkpoint_every_s: float = 300.0) -> Path:
    """The demo's design (single, multi-task, token-controlled: 5 jobs) on tiny subsets of
    the shipped bc2gm and gad data, with the tiny BERT."""
    manifest = folder / "tiny.toml"
    manifest.write_text(f"""
[study]
name = "tiny"
seeds = [1]

[models]
tiny = "{model}"

[defaults]
max_length = 48
learning_rate = 3e-3
warmup_steps = 2
batch_size = 8
max_epochs = {max_epochs}
eval_every = 4
patience = 100
max_train_examples = {max_train}
max_eval_examples = 16
checkpoint_every_s = {checkpoint_every_s}
precision = "fp32"

[[experiments]]
name = "single"
strategy = "single_task"
models = ["tiny"]
tasks = ["bc2gm", "gad"]

[[experiments]]
name = "multi"
strategy = "multi_task"
models = ["tiny"]
task_sets = [["bc2gm", "gad"]]

[[experiments]]
name = "token_controlled"
strategy = "token_controlled"
reference = "multi"
parity = "total"
""")
    return manifest


_TINY: dict = {}   # one reference run per test session, shared by the modules


def tiny_reference(tmp_path_factory) -> dict:
    """The tiny BERT, the tiny study's manifest and its results run uninterrupted by one
    worker in this process (one torch thread, as the workers below use), and how many
    seconds that run took."""
    if not _TINY:
        import torch

        folder = tmp_path_factory.mktemp("tiny_study")
        model = build_tiny_bert(folder / "tiny_bert")
        manifest = tiny_study(folder, model)
        torch.set_num_threads(1)
        plan = build_plan(load_manifest(manifest), DATA)
        t0 = time.monotonic()
        assert run_plan(plan, folder / "reference", job_fn=training_job,
                        out=lambda m: None) == 0
        _TINY.update(model=model, manifest=manifest, results=folder / "reference",
                     seconds=time.monotonic() - t0)
    return dict(_TINY)


def cli_env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
            **extra}


# ------------------------------------------------------------------ stand-in fixtures
@pytest.fixture
def env(tmp_path, monkeypatch):
    log = tmp_path / "executions.log"
    monkeypatch.setenv("STANDIN_LOG", str(log))
    monkeypatch.setenv("STANDIN_SLEEP_S", "0.05")
    monkeypatch.setenv("STANDIN_STEPS", "5")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("STANDIN_FAIL", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    return {"log": log, "data": data, "tmp": tmp_path}


def standin_reference(manifest: Path, env) -> dict[str, dict]:
    ref = env["tmp"] / "reference"
    saved = os.environ.pop("STANDIN_LOG")
    try:
        plan = build_plan(load_manifest(manifest), env["data"])
        assert run_plan(plan, ref, job_fn=standin_job, out=lambda m: None, poll_s=0.05,
                        heartbeat_s=0.2) == 0
    finally:
        os.environ["STANDIN_LOG"] = saved
    return results(ref, plan)


def run_standin_workers(manifest: Path, out: Path, env, n: int, **kw) -> tuple[int, list[str]]:
    plan = build_plan(load_manifest(manifest), env["data"])
    lines: list[str] = []
    rc = run_workers(plan, out, [str(manifest), str(out), str(env["data"])], workers=n,
                     command=STANDIN, worker_prefix="t", out=lines.append, **kw)
    return rc, lines


# ------------------------------------------------------------------ unit: slots
def test_worker_slots_follow_gpus_and_split_cpu_threads():
    auto_gpu = plan_workers(None, ["0", "1"], cores=4, prefix="k")
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in auto_gpu] == ["0", "1"]
    assert [s.worker_id for s in auto_gpu] == ["k-w0", "k-w1"]
    assert {s.env["OMP_NUM_THREADS"] for s in auto_gpu} == {"2"}
    assert len(plan_workers(None, [], cores=2, prefix="k")) == 1       # no GPU: one worker
    cpu = plan_workers(3, [], cores=2, prefix="k")
    assert len(cpu) == 3 and all("CUDA_VISIBLE_DEVICES" not in s.env for s in cpu)
    assert {s.env["OMP_NUM_THREADS"] for s in cpu} == {"1"}             # never 0 threads
    assert [s.env["OMP_NUM_THREADS"] for s in plan_workers(2, [], 8, "k")] == ["4", "4"]
    shared = plan_workers(3, ["GPU-a", "GPU-b"], cores=6, prefix="k")
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in shared] == ["GPU-a", "GPU-b", "GPU-a"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "3,5"}) == ["3", "5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,-1,4"}) == ["2"]
    assert parse_workers("auto") is None and parse_workers(" 2 ") == 2
    for bad in ("0", "-1", "two", "", "1.5"):
        with pytest.raises(InputError, match="--workers"):
            parse_workers(bad)


@pytest.mark.parametrize("n_gpus", [1, 2, 4])
def test_auto_gives_each_reported_gpu_its_own_worker_without_cuda_visible_devices(
        monkeypatch, n_gpus):
    """CUDA_VISIBLE_DEVICES unset (a Kaggle 2xT4 box, a lab node): the GPUs are the ones
    torch reports, one worker each, CUDA_VISIBLE_DEVICES set per child."""
    fake_cuda(monkeypatch, "t4", count=n_gpus)
    gpus = visible_gpus({})
    assert gpus == [str(i) for i in range(n_gpus)]
    slots = plan_workers(None, gpus, cores=8, prefix="k")
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == gpus
    assert {s.env["OMP_NUM_THREADS"] for s in slots} == {str(max(1, 8 // n_gpus))}
    # the variable, when set, wins over what torch reports (even set empty: no GPU)
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1"}) == ["1"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    fake_cuda(monkeypatch, None)
    assert visible_gpus({}) == [] and len(plan_workers(None, [], 8, "k")) == 1


def test_two_reported_gpus_start_two_workers_each_on_its_own_gpu(env, monkeypatch):
    """``--workers auto`` end to end (stand-in workers) with CUDA_VISIBLE_DEVICES unset and
    torch reporting two GPUs: two children, GPU 0 and GPU 1, and every job done once."""
    fake_cuda(monkeypatch, "t4", count=2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(WIDE), env["data"])
    rc, lines = run_standin_workers(WIDE, out, env, None)
    assert rc == 0, "\n".join(lines)
    assert [ln for ln in lines if ln.startswith("worker t-w")][:2] == [
        f"worker t-w{i}: OMP_NUM_THREADS={max(1, usable_cores() // 2)}, "
        f"CUDA_VISIBLE_DEVICES={i}; log {out / 'ledger/workers' / f't-w{i}.log'}"
        for i in (0, 1)]
    gpu_of = {}   # job -> the CUDA_VISIBLE_DEVICES of the child that ran it
    for ln in env["log"].read_text().splitlines():
        if ln.startswith("gpu "):
            gpu_of[ln.split()[1]] = ln.split()[2]
    assert set(gpu_of) == {j.job_id for j in plan.jobs}
    assert set(gpu_of.values()) == {"0", "1"}


# ------------------------------------------------------------------ stand-in jobs
def test_two_workers_run_each_job_exactly_once_with_the_same_results(env):
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(WIDE), env["data"])
    rc, lines = run_standin_workers(WIDE, out, env, 2)
    assert rc == 0, "\n".join(lines)
    starts, finishes = events(env["log"])
    assert len(plan.jobs) == 12 and set(finishes) == {j.job_id for j in plan.jobs}
    assert set(starts.values()) == {1} and set(finishes.values()) == {1}
    assert results(out, plan) == standin_reference(WIDE, env)
    for w in ("t-w0", "t-w1"):   # both worked, and each kept its own log
        log = (out / "ledger/workers" / f"{w}.log").read_text()
        assert "done " in log, f"{w} ran no job:\n{log}"
        assert any(ln.startswith(f"[{w}] done ") for ln in lines)


def test_dependencies_failures_and_retry_across_workers(env, monkeypatch):
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(SMALL), env["data"])
    monkeypatch.setenv("STANDIN_FAIL", "gad")
    rc, _ = run_standin_workers(SMALL, out, env, 2)
    assert rc == 1                                   # failures: exit 1, others went on
    monkeypatch.delenv("STANDIN_FAIL")
    n_starts = sum(events(env["log"])[0].values())
    assert run_standin_workers(SMALL, out, env, 2)[0] == 1   # failed jobs stay failed
    assert sum(events(env["log"])[0].values()) == n_starts
    rc, lines = run_standin_workers(SMALL, out, env, 2, retry_failed=True)
    assert rc == 0, "\n".join(lines)
    assert results(out, plan) == standin_reference(SMALL, env)
    _, finishes = events(env["log"])
    assert set(finishes.values()) == {1}             # retried once overall, not per worker
    # token_controlled jobs started only after their multi-task job finished
    order = env["log"].read_text().splitlines()
    for job in plan.jobs:
        if job.depends_on:
            assert order.index(f"finish {job.depends_on[0]}") < \
                min(i for i, ln in enumerate(order) if ln.startswith(f"start {job.job_id}"))


def test_time_budget_exits_3_and_a_rerun_completes(env, monkeypatch):
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(SMALL), env["data"])
    monkeypatch.setenv("STANDIN_SLEEP_S", "0.3")     # 5 jobs x 1.5 s on 2 workers
    t0 = time.monotonic()
    rc, lines = run_standin_workers(SMALL, out, env, 2, time_budget_s=2.0)
    assert rc == 3, "\n".join(lines)
    assert time.monotonic() - t0 < 6
    assert len(results(out, plan)) < len(plan.jobs)
    monkeypatch.setenv("STANDIN_SLEEP_S", "0.02")
    assert run_standin_workers(SMALL, out, env, 2)[0] == 0
    assert results(out, plan) == standin_reference(SMALL, env)
    assert set(events(env["log"])[1].values()) == {1}


PARENT = """
import sys
sys.path.insert(0, {assets!r})
from runner.study.manifest import load_manifest
from runner.study.plan import build_plan
from runner.orchestrate.workers import run_workers
plan = build_plan(load_manifest({manifest!r}), {data!r})
sys.exit(run_workers(plan, {out!r}, [{manifest!r}, {out!r}, {data!r}], workers=2,
                     command={command!r}, worker_prefix="p"))
"""


def test_sigterm_to_the_parent_reaches_every_worker_and_the_rerun_resumes(env, monkeypatch):
    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(WIDE), env["data"])
    code = PARENT.format(assets=str(ASSETS), manifest=str(WIDE), data=str(env["data"]),
                         out=str(out), command=STANDIN)
    parent = subprocess.Popen([sys.executable, "-c", code],
                              env={**os.environ, "STANDIN_SLEEP_S": "0.2"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while sum(1 for c in out.glob("*/checkpoint.json")
              if not (c.parent / "result.json").exists()) < 2:
        assert parent.poll() is None and time.monotonic() < deadline   # both are mid-job
        time.sleep(0.05)
    parent.send_signal(signal.SIGTERM)
    stdout, _ = parent.communicate(timeout=30)
    assert parent.returncode == 3, stdout
    assert stdout.count("interrupted (SIGTERM)") == 2, stdout   # each worker checkpointed
    assert "run the same command again to resume" in stdout
    assert len(results(out, plan)) < len(plan.jobs)
    monkeypatch.setenv("STANDIN_SLEEP_S", "0.02")
    assert run_standin_workers(WIDE, out, env, 2)[0] == 0
    assert results(out, plan) == standin_reference(WIDE, env)
    lines = env["log"].read_text().splitlines()
    assert sum(1 for ln in lines if ln.startswith("start") and not ln.endswith(" 0")) >= 2


# A worker as `python -m runner run` starts it: die_with_parent() first, then the stand-in.
DYING_WORKER = [sys.executable, "-c", (
    "import runpy, sys\n"
    "from runner.orchestrate.workers import die_with_parent\n"
    "die_with_parent()\n"
    f"sys.argv = [{str(ASSETS / 'standin_job.py')!r}, *sys.argv[1:]]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n")]


def test_workers_checkpoint_and_stop_when_the_parent_is_killed(env, monkeypatch):
    from runner.orchestrate.ledger import Ledger, pid_alive

    out = env["tmp"] / "r"
    plan = build_plan(load_manifest(WIDE), env["data"])
    code = PARENT.format(assets=str(ASSETS), manifest=str(WIDE), data=str(env["data"]),
                         out=str(out), command=DYING_WORKER)
    parent = subprocess.Popen([sys.executable, "-c", code],
                              env={**os.environ, "STANDIN_SLEEP_S": "0.1",
                                   "STANDIN_STEPS": "20"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    ids = [j.job_id for j in plan.jobs]
    while True:
        claims = Ledger(out).snapshot(ids).claims if (out / "ledger").exists() else {}
        running = [c for c in claims.values() if c.status == "running"]
        if len(running) == 2 and all((out / c.info["job_id"] / "checkpoint.json").exists()
                                     for c in running):
            break                                     # both workers are mid-job
        assert parent.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    parent.kill()
    parent.wait()
    pids = [c.info["pid"] for c in running]
    while any(pid_alive(p) for p in pids):            # SIGTERM from the kernel (prctl)
        assert time.monotonic() < deadline + 15, "a worker outlived its parent"
        time.sleep(0.05)
    snap = Ledger(out).snapshot(ids)
    held = [c.info["job_id"] for c in running]
    # they checkpointed and released their jobs (not merely died holding them)
    assert not any(j in snap.done for j in held)
    logs = [f.read_text() for f in (out / "ledger/workers").glob("*.log")]
    assert all(snap.claims[j].status == "released" for j in held), (
        [snap.claims[j] for j in held], logs)
    monkeypatch.setenv("STANDIN_SLEEP_S", "0.01")
    monkeypatch.setenv("STANDIN_STEPS", "20")
    assert run_standin_workers(WIDE, out, env, 2)[0] == 0
    got = results(out, plan)
    assert set(got) == set(ids) and {r["steps"] for r in got.values()} == {20}
    _, finishes = events(env["log"])
    assert set(finishes) == set(ids) and set(finishes.values()) == {1}
    lines = env["log"].read_text().splitlines()
    for j in held:   # resumed from the checkpoint written on SIGTERM
        assert any(ln.startswith(f"start {j} ") and not ln.endswith(" 0") for ln in lines)


# ------------------------------------------------------------------ CLI
@pytest.mark.parametrize("extra", [["--workers", "0"], ["--workers", "many"],
                                   ["--workers", "2", "--executor", "ray"],
                                   ["--address", "auto"],
                                   ["--executor", "ray", "--cpus-per-job", "0"]])
def test_bad_worker_flags_exit_2_and_write_nothing(extra, tmp_path):
    res = tmp_path / "res"
    proc = subprocess.run([sys.executable, "-m", "runner", str(SMALL), "--results-dir",
                           str(res), "--data-dir", str(tmp_path), *extra], cwd=ROOT,
                          env=cli_env(), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not res.exists()


@pytest.mark.slow
def test_real_engine_two_workers_equal_one_worker(tmp_path, tmp_path_factory):
    ref = tiny_reference(tmp_path_factory)
    manifest, one, two = ref["manifest"], ref["results"], tmp_path / "two"
    cmd = [sys.executable, "-m", "runner", str(manifest), "--data-dir", str(DATA)]
    second = subprocess.run([*cmd, "--results-dir", str(two), "--workers", "2"], cwd=ROOT,
                            env=cli_env(), capture_output=True, text=True, timeout=240,
                            check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    plan = build_plan(load_manifest(manifest), DATA)
    assert_same_engine_results(one, two, plan)
    logs = {w: (two / "ledger/workers" / f"{w}.log").read_text() for w in
            (p.stem for p in (two / "ledger/workers").glob("*.log"))}
    assert len(logs) == 2
    done = Counter(ln.split()[1] for text in logs.values() for ln in text.splitlines()
                   if ln.startswith("done "))
    assert set(done) == {j.job_id for j in plan.jobs} and set(done.values()) == {1}
