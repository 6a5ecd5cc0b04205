"""Batching on a tiny BERT: length-grouped epochs, token counts, truncation, trimming."""

from __future__ import annotations

import numpy as np
import pytest

from runner.ml import batching
from runner.ml.train import trim_to_target
from runner.study import batch_groups
from runner.study.config import TrainConfig
from tests.runner import jobs
from tests.runner.jobs import (
    CLS,
    NER,
    REG,
    make_frames,
)

tiny_model, env = jobs.tiny_model, jobs.env   # the shared fixtures


# ----------------------------------------------------------------------------- batching
def test_length_grouped_epoch_covers_every_example_once_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=3000)
    plan = batching.epoch_plan(lengths, 16, seed=3, task="bc2gm", epoch=0)
    flat = np.concatenate(plan)
    assert sorted(flat.tolist()) == list(range(3000))
    real = sum(int(lengths[b].sum()) for b in plan)
    padded = sum(int(lengths[b].max()) * len(b) for b in plan)
    assert real / padded > 0.95
    again = batching.epoch_plan(lengths, 16, seed=3, task="bc2gm", epoch=0)
    assert all((a == b).all() for a, b in zip(plan, again))
    other = batching.epoch_plan(lengths, 16, seed=3, task="bc2gm", epoch=1)
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(plan, other))
    # random order between groups: batch lengths are not globally sorted
    maxima = [int(lengths[b].max()) for b in plan]
    assert maxima != sorted(maxima, reverse=True)


def test_the_epoch_opens_with_its_longest_batch_and_small_epochs_have_four_groups():
    """``hf-groups`` (new jobs): groups of min(50, n // (4 * batch_size)) batches, the batch with
    the longest example first.  From 50 * 4 batches an epoch has the old order's 50-batch groups
    and the same shuffle: only the opening batch moved."""
    lengths = np.random.default_rng(1).integers(5, 120, size=4000)
    new = batching.epoch_plan(lengths, 16, seed=3, task="bc2gm", epoch=0)
    old = batching.epoch_plan(lengths, 16, seed=3, task="bc2gm", epoch=0, order="groups-of-50")
    assert lengths[new[0]].max() == lengths.max() and lengths[old[0]].max() < lengths.max()
    k = next(i for i, b in enumerate(old) if b.tolist() == new[0].tolist())
    assert [b.tolist() for b in new] == [b.tolist() for b in [old[k], *old[:k], *old[k + 1:]]]
    # 200 examples in batches of 8: the old order sorts them as one group of 50 batches (every
    # batch 8 consecutive lengths), the new one in groups of 6 batches
    small = np.arange(1, 201)

    def one_sorted_group(plan):
        return all(small[b].max() - small[b].min() == len(b) - 1 for b in plan)
    plans = {order: batching.epoch_plan(small, 8, seed=3, task="t", epoch=0, order=order)
             for order in batch_groups.BATCH_ORDERS}
    for plan in plans.values():
        assert sorted(np.concatenate(plan).tolist()) == list(range(200))
    assert one_sorted_group(plans["groups-of-50"]) and not one_sorted_group(plans["hf-groups"])
    with pytest.raises(ValueError, match="unknown batch order 'zigzag'"):
        batching.epoch_plan(small, 8, seed=3, task="t", epoch=0, order="zigzag")


def test_checkpoints_written_before_the_order_was_named_keep_their_batches():
    """The order of the engine before issue 14, pinned: a job checkpointed then resumes on the
    very batches it started with."""
    lengths = np.array([7, 3, 12, 5, 9, 4, 11, 6, 8, 2, 10, 1, 13])
    plan = batching.epoch_plan(lengths, 3, seed=5, task="bc2gm", epoch=1, order="groups-of-50")
    assert [b.tolist() for b in plan] == [[10, 4, 8], [11], [12, 2, 6], [5, 1, 9], [0, 7, 3]]
    assert batching.LEGACY_BATCH_ORDER == "groups-of-50" != batching.BATCH_ORDER


def test_token_counts_equal_attention_mask_sums_and_labels_align(tiny_model):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model)
    df = make_frames(30)["tiny_ner"]
    split = batching.encode_split(NER, df, tok, 24)
    batch = batching.collate(split, np.arange(30), tok.pad_token_id)
    mask = batch.tensors["attention_mask"]
    assert isinstance(batch.n_tokens, int)
    assert batch.n_tokens == int(mask.sum()) == int(split.lengths.sum())
    assert mask.shape[1] == int(split.lengths.max())  # padded to the longest, no further
    # gold labels at first sub-tokens map back to the gold word tags (nothing truncated here)
    for i, tags in enumerate(df["tags"]):
        labels = split.labels[i]
        ids = np.where(labels >= 0, labels, 0)
        assert batching.word_predictions(split, i, ids, NER.labels) == list(tags)
    # a truncated sentence: words past max_length are predicted "O"
    short = batching.encode_split(NER, df, tok, 6)
    i = int(np.argmax([len(t) for t in df["tokens"]]))
    preds = batching.word_predictions(short, i, np.ones(6, dtype=int), NER.labels)
    assert len(preds) == len(df["tokens"][i]) and preds[-1] == "O"


@pytest.mark.parametrize("spec", [NER, CLS, REG], ids=lambda s: s.kind)
def test_truncation_is_counted_per_example(tiny_model, spec):
    """EncodedSplit.truncated = examples whose full tokenisation is longer than the cut."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model)
    df = make_frames(40)[spec.name]
    full = batching.encode_split(spec, df, tok, 10_000).lengths  # nothing cut (limit 64)
    for length in (5, 9, 14, int(full.max()), 64):
        split = batching.encode_split(spec, df, tok, length)
        assert split.max_length == length and int(split.lengths.max()) <= length
        assert split.truncated == int((full > length).sum())
    assert 0 < batching.encode_split(spec, df, tok, 9).truncated < len(df)


def test_the_model_limit_caps_the_manifests_length():
    from types import SimpleNamespace as NS
    limit = batching.model_length_limit
    unlimited = NS(model_max_length=int(1e30))  # what tokenizers without a limit report
    assert limit(unlimited, NS(max_position_embeddings=512, model_type="bert")) == 512
    assert limit(NS(model_max_length=128), NS(max_position_embeddings=512)) == 128
    # RoBERTa's positions start after its padding index: 514 - (1 + 1) usable
    assert limit(unlimited, NS(max_position_embeddings=514, model_type="roberta",
                               pad_token_id=1)) == 512
    assert limit(unlimited, None) is None and limit(NS(), NS()) is None
    cfg = TrainConfig.from_dict({"max_length": 600, "max_length_per_task": {"gad": 100}})
    assert batching.effective_max_length("gad", cfg, 512) == 100
    assert batching.effective_max_length("bc2gm", cfg, 512) == 512
    assert batching.effective_max_length("bc2gm", cfg, None) == 600
    assert batching.effective_max_length("bc2gm", TrainConfig.from_dict({"max_length": 64}), 512) == 64


def test_trim_lands_within_one_example_of_the_target():
    rng = np.random.default_rng(1)
    lengths = rng.integers(3, 40, size=64)
    for remaining in range(1, int(lengths[:16].sum()) + 5):
        kept = trim_to_target(np.arange(16), lengths, remaining)
        got, k = int(lengths[kept].sum()), len(kept)
        assert k >= 1 and (kept == np.arange(k)).all()
        if got == int(lengths[:16].sum()):
            continue  # the whole batch fits
        # the gap is less than the example at the boundary (the last taken or the next one)
        boundary = int(lengths[k - 1]) if got > remaining else int(lengths[k])
        assert abs(got - remaining) < boundary
        prefix = np.cumsum(lengths[:16])
        assert abs(got - remaining) == int(np.abs(prefix - remaining).min())  # the closest


