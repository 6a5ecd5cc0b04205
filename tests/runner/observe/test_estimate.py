"""The compute estimate against hand computations."""

from __future__ import annotations

import json

import pytest

from runner.observe import estimate as est
from runner.observe.estimate import (
    JobSize,
    Shape,
    estimate,
    estimate_as_json,
    model_shape,
    render_estimate,
    throughput,
)


def test_shapes_and_parameter_counts():
    base = model_shape("bert-base-uncased")
    assert base.non_embedding_params == 12 * (4 * 768 ** 2 + 2 * 768 * 3072) == 84_934_656
    assert base.params == pytest.approx(110e6, rel=0.01)          # BERT-base: 110M
    assert model_shape("minilm").params == pytest.approx(22.7e6, rel=0.01)
    assert model_shape("bert-large-uncased").params == pytest.approx(335e6, rel=0.01)
    assert model_shape("no-such-model") is None


def test_shape_from_a_local_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
         "vocab_size": 1000, "max_position_embeddings": 128}))
    assert model_shape(str(tmp_path)) == Shape(2, 64, 128, 1000, 128)


def test_t4_hours_by_hand():
    # BERT-base, 1e8 training tokens, 1e7 eval tokens, S = 50:
    # train 6 * 84,934,656 + 12 * 12 * 768 * 50 = 515,137,536 FLOP/token
    # eval  2 * 84,934,656 +  4 * 12 * 768 * 50 = 171,712,512 FLOP/token
    # T4 at 20% of 65 TFLOP/s = 13 TFLOP/s; + 20 s start-up
    job = JobSize("j1", "bert-base-uncased", 1e8, 1e7, 50.0, "x")
    e = estimate([job], "t4", quota_hours=1.0, devices_per_session=1)
    flops = 515_137_536 * 1e8 + 171_712_512 * 1e7
    assert e.flops == pytest.approx(flops)
    assert e.hours == pytest.approx((flops / 13e12 + 20) / 3600)
    assert e.hours == pytest.approx(1.143, abs=1e-3)
    assert e.fits_quota is False                     # 1.14 h > a 1 h quota
    text = render_estimate(e)
    assert "does NOT fit 1 h" in text and "ESTIMATE" in text and "6P + 12LHS" in text
    data = estimate_as_json(e)
    assert data["total"]["hours"] == pytest.approx(e.hours)
    assert data["jobs"][0]["train_tokens"] == 100_000_000
    json.dumps(data)


def test_device_table_and_cpu_default():
    assert throughput("t4").flops_per_s == pytest.approx(65e12 * 0.20)
    assert throughput("a100").flops_per_s == pytest.approx(312e12 * est.DEVICES["a100"].mfu)
    assert throughput("cpu").flops_per_s == est.CPU_DEFAULT_FLOPS
    with pytest.raises(ValueError):
        throughput("tpu")


BENCH = {"device": "Tesla T4 (CUDA 12.4)", "precision": "float16", "peak_flops_measured": 40e12,
         "peak_flops_datasheet": 65e12,
         "models": {"minilm": {"best": {"engine": {"tokens_per_s": 50_000.0,
                                                    "model_flops_per_s": 5e12,
                                                    "mfu_datasheet": 5e12 / 65e12}}},
                    "bert-base": {"best": {"engine": {"tokens_per_s": 20_000.0,
                                                       "model_flops_per_s": 10e12,
                                                       "mfu_datasheet": 10e12 / 65e12}}}}}


def test_measured_throughput_from_the_benchmark(tmp_path):
    out = tmp_path / "bench.txt"   # the script's stdout: tables, then the JSON line
    out.write_text("device: Tesla T4\nsome table\n" + json.dumps(BENCH) + "\n")
    bench = est.read_benchmark(out)
    same = throughput("t4", bench)
    assert same.flops_per_s == 5e12 and "measured on Tesla T4" in same.source
    other = throughput("a100", bench)          # another GPU: its MFU on the A100's peak
    assert other.flops_per_s == pytest.approx(312e12 * 5 / 65)
    cpu = throughput("cpu", bench)             # a GPU measurement says nothing about a CPU
    assert cpu.flops_per_s == est.CPU_DEFAULT_FLOPS
    cpu_bench = {"device": "CPU, 2 threads", "models": {"minilm": {"best": {"engine": {
        "model_flops_per_s": 80e9, "mfu_datasheet": None}}}}}
    assert throughput("cpu", cpu_bench).flops_per_s == 80e9


def test_a_benchmark_result_document_is_read_by_its_results(tmp_path):
    """train_throughput.py's result document (benchmarks/benchmark_record.py) wraps the
    figures in ``results``; the estimate reads the same numbers as from the flat file."""
    doc = {"schema": est.BENCHMARK_SCHEMA, "benchmark": "train_throughput", "commit": "abc123",
           "device": BENCH["device"], "results": BENCH}
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc, indent=2))
    bench = est.read_benchmark(path)
    assert bench["models"] == BENCH["models"] and bench["device"] == BENCH["device"]
    got = throughput("t4", bench)
    assert got.flops_per_s == 5e12 and "train_throughput.py at abc123" in got.source
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps(BENCH))
    assert est.read_benchmark(flat) == BENCH
    (tmp_path / "none.txt").write_text("no json here\n")
    with pytest.raises(ValueError, match="no JSON"):
        est.read_benchmark(tmp_path / "none.txt")


def test_unknown_model_is_reported_not_guessed():
    e = estimate([JobSize("j1", "mystery-model", 1e6), JobSize("j2", "minilm", 1e6)], "cpu")
    assert e.unknown_models == ["mystery-model"]
    assert e.jobs[0].hours is None and e.jobs[1].hours > 0
    assert "mystery-model" in render_estimate(e)
    assert estimate_as_json(e)["jobs"][0]["train_flops"] is None


def test_demo_manifest_estimate_matches_its_measured_time():
    """The demo's 10 jobs took 363 s on 2 shared cores (ledger durations of a run here):
    the CPU estimate -- from a throughput measurement (benchmarks/seed_spread.py's 1,176
    minilm tokens/s) and a measured model load, not calibrated on this run -- must be within a
    factor of 1.5 of that (it is 419 s: 1.15x)."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[3]
    if not (root / "data" / "TOKEN_LENGTHS.json").exists():
        pytest.skip("no prepared data")
    from runner.study.manifest import load_manifest
    from runner.study.plan import build_plan
    plan = build_plan(load_manifest(root / "manifests" / "demo.toml"), root / "data")
    sizes = est.job_sizes(plan)
    assert len(sizes) == len(plan.jobs) == 10
    seconds = estimate(sizes, "cpu").hours * 3600
    assert 363 / 1.5 <= seconds <= 363 * 1.5, seconds
