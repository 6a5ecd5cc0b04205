"""``python -m runner selfcheck``: CPU mode end to end (what CI runs; on a GPU the same
command checks the card), its throughput file read by ``plan --estimate --throughput``, its
bad input, and its GPU-side choices with torch.cuda faked (tests/fake_gpu.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from runner.cli import main
from runner.recipes import selfcheck
from tests.fake_gpu import fake_cuda

REPO = Path(__file__).resolve().parents[3]
CHECKS = ["environment", "models", "jobs", "precision", "workers", "kill and resume",
          "throughput minilm", "throughput bert-base", "throughput file"]


def cli(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_cpu_selfcheck_passes_and_its_throughput_file_feeds_the_estimate(tmp_path):
    out = tmp_path / "sc"
    proc = cli("selfcheck", "--device", "cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads((out / "selfcheck.json").read_text())
    assert summary["ok"] and [c["name"] for c in summary["checks"]] == CHECKS
    assert all(c["ok"] for c in summary["checks"])
    assert summary["environment"]["precision"] == "float32"
    kill = next(c for c in summary["checks"] if c["name"] == "kill and resume")
    assert "mid-job: " in kill["detail"] and "equal" in kill["detail"]
    assert not (out / "models").exists()          # the model folders are not left behind
    bench = json.loads((out / "throughput.json").read_text())
    assert bench["device"].startswith("CPU")
    for name, (layers, hidden) in {"minilm": (6, 384), "bert-base": (12, 768)}.items():
        row = bench["models"][name]["best"]["engine"]
        assert (bench["models"][name]["layers"], bench["models"][name]["hidden"]) == \
            (layers, hidden)
        assert row["tokens_per_s"] > 0 and 0 < row["mfu_measured_peak"]
        assert row["model_flops_per_s"] == pytest.approx(row["flops_per_token"]
                                                         * row["tokens_per_s"])
    estimate = cli("plan", "manifests/demo.toml", "--estimate", "--gpu", "cpu",
                   "--throughput", str(out / "throughput.json"), "--json")
    assert estimate.returncode == 0, estimate.stderr
    doc = json.loads(estimate.stdout)
    slowest = min(r["best"]["engine"]["model_flops_per_s"] for r in bench["models"].values())
    assert doc["throughput_flops"] == pytest.approx(slowest)
    assert doc["throughput_source"].startswith("measured on CPU")
    # a second run replaces its own earlier output
    assert selfcheck._fresh_output(out) == out.resolve() and not (out / "reference").exists()


def test_cuda_requested_without_a_gpu_is_bad_input(monkeypatch, capsys, tmp_path):
    fake_cuda(monkeypatch, None)
    assert main(["selfcheck", "--device", "cuda", "--out", str(tmp_path / "x")]) == 2
    assert "--device" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_foreign_output_folder_is_refused_and_kept(tmp_path, capsys, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")   # restored after: --device cpu sets it
    assert main(["selfcheck", "--device", "cpu", "--out", str(mine)]) == 2
    assert "selfcheck.json" in capsys.readouterr().err
    assert (mine / "thesis.tex").read_text() == "keep me"


@pytest.mark.parametrize("card,precision,scaling", [("t4", "float16", True),
                                                     ("a100", "bfloat16", False),
                                                     ("h100", "bfloat16", False)])
def test_the_environment_check_names_the_cards_precision(monkeypatch, tmp_path, card,
                                                         precision, scaling):
    fake_cuda(monkeypatch, card, count=2)
    sc = selfcheck.SelfCheck(tmp_path, tmp_path, "cuda", selfcheck.DEFAULTS["cuda"], "auto")
    selfcheck._environment(sc, torch.device("cuda"))
    env = sc.environment
    assert (env["precision"], env["loss_scaling"]) == (precision, scaling)
    assert env["gpus"]["count"] == 2 and env["gpus"]["native_bf16"] is (card != "t4")
    assert sc.checks[0].ok and f"2 x {env['gpus']['name']}" in sc.checks[0].detail
    assert selfcheck._gpu_kind(env["gpus"]["name"]) == card


def test_resumed_results_compare_counts_exactly_and_metrics_within_tolerance():
    a = {"test_results": {"eval_f1": 0.5, "eval_loss": 1.0},
         "validation_history": [{"score": 0.4}, {"score": float("nan")}]}
    assert selfcheck._max_metric_difference(a, a) == 0.0
    b = {**a, "test_results": {"eval_f1": 0.51, "eval_loss": 1.0}}
    assert selfcheck._max_metric_difference(a, b) == pytest.approx(0.01)
    c = {**a, "validation_history": [{"score": 0.4}]}
    assert selfcheck._max_metric_difference(a, c) == float("inf")
