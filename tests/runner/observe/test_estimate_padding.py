"""The estimate charges training on the tokens the engine processes: the real ones plus the
padding of its length-grouped batches (runner.study.batch_groups, the rule runner.ml.batching
applies)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runner.ml.batching import epoch_plan
from runner.observe import estimate as est
from runner.study.batch_groups import group_size, padding_ratio

ROOT = Path(__file__).resolve().parents[3]


def test_padding_ratio_by_hand():
    # one group holds every example (groups-of-50: 100 per group): sorted, batches [4, 3]
    # and [2, 1] pad to 4 and 2: 8 + 4 = 12 processed tokens for 10 real ones
    assert padding_ratio([1, 2, 3, 4], 2, order="groups-of-50") == pytest.approx(1.2)
    assert padding_ratio([7] * 50, 16) == 1.0
    assert padding_ratio([], 16) == 1.0
    with pytest.raises(ValueError, match="unknown batch order"):
        padding_ratio([1, 2], 2, order="zigzag")


def test_group_size_is_hugging_faces_rule():
    assert group_size(200, 16) == 48            # 200 // 64 = 3 batches
    assert group_size(10, 16) == 16             # at least one batch
    assert group_size(100_000, 16) == 800       # at most 50 batches
    assert group_size(200, 16, "groups-of-50") == 800


@pytest.mark.parametrize("n", [200, 3000])
def test_padding_ratio_matches_the_engine_s_batches(n):
    """Over many epochs the engine's own batches (runner.ml.batching.epoch_plan) process as
    many tokens per real one as padding_ratio says (other shuffles of the same rule)."""
    rng = np.random.default_rng(1)
    lengths = np.minimum(rng.lognormal(3.5, 0.6, n).astype(np.int64) + 2, 128)
    processed = real = 0
    for epoch in range(60 if n < 1000 else 6):
        for batch in epoch_plan(lengths, 16, 0, "t", epoch):
            processed += int(lengths[batch].max()) * len(batch)
            real += int(lengths[batch].sum())
    assert padding_ratio(lengths, 16, epochs=20) == pytest.approx(processed / real, rel=0.02)
    assert processed / real > 1.02       # the rule pads: a test that could fail


def test_training_flops_are_charged_with_the_job_s_padding():
    shape = est.model_shape("minilm")
    plain = est.estimate([est.JobSize("a", "minilm", 1e6, seq_len=40.0)], "cpu")
    padded = est.estimate([est.JobSize("a", "minilm", 1e6, seq_len=40.0, train_padding=1.25)],
                          "cpu")
    assert plain.jobs[0].train_flops == pytest.approx(est.train_flops_per_token(shape, 40.0) * 1e6)
    assert padded.jobs[0].train_flops == pytest.approx(1.25 * plain.jobs[0].train_flops)
    assert padded.jobs[0].train_tokens == plain.jobs[0].train_tokens   # real tokens shown


def test_a_measured_row_s_padding_puts_its_flops_on_the_same_basis():
    row = {"model_flops_per_s": 50e9, "mfu_datasheet": None}
    bench = {"device": "CPU, 1 thread", "models": {"minilm": {"best": {"engine": row}}}}
    assert est.throughput("cpu", bench).flops_per_s == 50e9
    row["padding"] = 1.2
    assert est.throughput("cpu", bench).flops_per_s == pytest.approx(60e9)


def test_small_subsets_pad_more_than_whole_tasks():
    if not (ROOT / "data" / "TOKEN_LENGTHS.json").exists():
        pytest.skip("no prepared data")
    from runner.data import token_lengths
    from runner.study.manifest import load_manifest
    from runner.study.plan import build_plan

    pads = est.Padding(token_lengths.read(ROOT / "data"))
    whole = pads.ratio("bc2gm", 512, 12574, 16)
    small = pads.ratio("bc2gm", 512, 200, 16)
    assert 1.0 < whole < 1.1 < small
    assert pads.ratio("bc2gm", 512, 200, 16) == small          # cached, deterministic
    plan = build_plan(load_manifest(ROOT / "manifests" / "demo.toml"), ROOT / "data")
    sizes = est.job_sizes(plan)
    assert all(s.train_padding > 1.1 for s in sizes)            # 200-400 example subsets


def test_the_cpu_default_s_padding_is_its_measurement_s():
    """CPU_MEASURED_PADDING is the padding of the measurement behind the CPU default (BC2GM,
    2,000 examples, batch 16, 128 tokens), recomputed here so the constant cannot drift."""
    if not (ROOT / "data" / "TOKEN_LENGTHS.json").exists():
        pytest.skip("no prepared data")
    from runner.data import token_lengths

    pads = est.Padding(token_lengths.read(ROOT / "data"))
    assert pads.ratio("bc2gm", 128, 2000, 16) == pytest.approx(est.CPU_MEASURED_PADDING, abs=5e-4)
