"""Tokenisation, word -> first-subtoken label alignment, dynamic padding, length-grouped batches.

Every split is tokenised once, without padding, into an :class:`EncodedSplit`, cut at the task's
effective length (:func:`effective_max_length`: the manifest's, capped by the model's own
limit), with the number of examples that cut.  A batch is a list of example indices;
:func:`collate` pads it to its own longest example (dynamic padding), so the only padding fed
to the model is the difference between lengths inside one batch.  Training
batches are *length grouped* (:func:`length_grouped_batches`): a seeded permutation is cut
into mega-batches, each sorted by length and cut into batches, the batches of the whole epoch
are shuffled (random order between groups) and the one holding the epoch's longest example is
moved to the front, so the first step meets the epoch's peak memory.  A mega-batch is
``min(MEGABATCH_FACTOR, n // (4 * batch_size))`` batches (at least one) -- Hugging Face's
length grouping's size: at least four groups per epoch, at most 50 batches.  The plan of an
epoch is a pure function of (seed, task, epoch, order), which is what lets a resumed job jump
to its position; a checkpoint names its order (``TrainingProgress.batch_order``), and one
written before the order had a name resumes in ``"groups-of-50"``.

The order was measured against the length-grouped ``Trainer``'s (each mega-batch consumed
longest to shortest, no shuffle between batches) and the engine's first (``"groups-of-50"``),
MiniLM, 2,000 training examples, paired by seed (``benchmarks/seed_spread.py``, files
``benchmarks/evidence/seed_spread_*.json``, indexed in its README.md).  The shuffle between batches is what keeps GAD
steady: fed the Trainer's order, the engine's GAD score fell 1.9 points and its seed-to-seed
sd grew 2.7x, to the Trainer's own (10 seeds).  On BC2GM the 50-batch groups had 1.46x the
Trainer's sd (20 seeds, 95% interval 0.92-2.32); ``"hf-groups"`` has 1.19x (0.75-1.90) and a
mean 0.19 points under the Trainer's (-0.76..+0.38), and on GAD 0.35x the Trainer's sd and
+1.12 points.  Between the engine's two orders no difference is significant (BC2GM sd 0.82x,
0.52-1.30; GAD -0.65 points, -1.47..+0.17).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from runner.study.batch_groups import BATCH_ORDER, length_grouped_batches
from runner.study.compat import LEGACY_BATCH_ORDER  # noqa: F401  (checkpoints' default)
from runner.study.config import TrainConfig

IGNORE_INDEX = -100  # label of sub-tokens that are not a word's first one, and of special tokens


@dataclass
class EncodedSplit:
    """One split of one task, tokenised (no padding)."""

    task: str
    kind: str
    input_ids: list[np.ndarray]            # int64 sub-token ids per example
    token_type_ids: list[np.ndarray] | None  # None where the tokenizer has none (RoBERTa)
    labels: list                           # ner: int64 arrays (IGNORE_INDEX off first sub-tokens);
    #                                        classification: int; multilabel: float32 arrays;
    #                                        regression: float
    word_first: list[np.ndarray] | None    # ner: position of each word's first sub-token, -1 if
    #                                        truncated away
    lengths: np.ndarray                    # sub-tokens per example, int64
    max_length: int = 0                    # the length it was cut at
    truncated: int = 0                     # examples longer than max_length (cut to it)

    def __len__(self) -> int:
        return len(self.input_ids)


# Model types whose position ids start after the padding index (RoBERTa's "padding_idx + 1"),
# so max_position_embeddings - pad_token_id - 1 positions are usable.
OFFSET_POSITION_MODELS = ("roberta", "xlm-roberta", "camembert", "longformer")


def model_length_limit(tokenizer, encoder_config=None) -> int | None:
    """The longest input the model takes: its position embeddings, and the tokenizer's
    ``model_max_length`` where it states one (tokenizers without a limit report a huge one)."""
    limits = []
    stated = getattr(tokenizer, "model_max_length", None)
    if isinstance(stated, int) and 0 < stated < 100_000:
        limits.append(stated)
    positions = getattr(encoder_config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        if getattr(encoder_config, "model_type", "") in OFFSET_POSITION_MODELS:
            positions -= int(getattr(encoder_config, "pad_token_id", 1) or 0) + 1
        limits.append(positions)
    return min(limits) if limits else None


def effective_max_length(task: str, config: TrainConfig, limit: int | None) -> int:
    """Truncation length of ``task`` in sub-tokens: the manifest's (``max_length_per_task``,
    else ``max_length``), capped by the model's ``limit`` (:func:`model_length_limit`)."""
    length = config.max_length_for(task)
    return length if limit is None else min(length, int(limit))


def encode_split(spec, df, tokenizer, max_length: int) -> EncodedSplit:
    """Tokenise a prepared split (columns as in the contract) for ``spec.kind``."""
    n = len(df)
    if spec.kind == "ner":
        words = [list(map(str, w)) for w in df[spec.text_fields[0]]]
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
        label_id = {tag: i for i, tag in enumerate(spec.labels)}
        tags_col = df[spec.label_field] if spec.label_field in df.columns else [None] * n
        labels, word_first = [], []
        for i, tags in enumerate(tags_col):
            word_ids = enc.word_ids(i)
            first = np.full(len(words[i]), -1, dtype=np.int64)
            lab = np.full(len(word_ids), IGNORE_INDEX, dtype=np.int64)
            previous = None
            for pos, w in enumerate(word_ids):
                if w is not None and w != previous:
                    first[w] = pos
                    if tags is not None:
                        lab[pos] = label_id[str(tags[w])]
                previous = w
            labels.append(lab)
            word_first.append(first)
    else:
        columns = [df[f].astype(str).tolist() for f in spec.text_fields]
        if len(columns) == 1:
            enc = tokenizer(columns[0], truncation=True, max_length=max_length)
        else:
            # the longer text (a context, a second sentence) gives way first
            enc = tokenizer(columns[0], columns[1], truncation="longest_first",
                            max_length=max_length)
        word_first = None
        raw = df[spec.label_field].tolist()
        if spec.kind == "classification":
            label_id = {c: i for i, c in enumerate(spec.labels)}
            labels = [label_id[str(v)] for v in raw]
        elif spec.kind == "multilabel":
            label_id = {c: i for i, c in enumerate(spec.labels)}
            labels = []
            for names in raw:
                vec = np.zeros(len(spec.labels), dtype=np.float32)
                for name in names:
                    if str(name) in label_id:  # "none" / [] = no hallmark
                        vec[label_id[str(name)]] = 1.0
                labels.append(vec)
        elif spec.kind == "regression":
            labels = [float(v) for v in raw]
        else:
            raise ValueError(f"task {spec.name}: unknown kind {spec.kind!r}")
    input_ids = [np.asarray(x, dtype=np.int64) for x in enc["input_ids"]]
    token_type_ids = None
    if "token_type_ids" in enc:
        token_type_ids = [np.asarray(x, dtype=np.int64) for x in enc["token_type_ids"]]
    lengths = np.fromiter((len(x) for x in input_ids), dtype=np.int64, count=n)
    # a cut example keeps what did not fit in its encoding's ``overflowing`` part
    truncated = sum(1 for e in enc.encodings if e.overflowing)
    return EncodedSplit(spec.name, spec.kind, input_ids, token_type_ids, labels, word_first,
                        lengths, int(max_length), truncated)


@dataclass
class Batch:
    task: str
    tensors: dict[str, torch.Tensor]  # input_ids, attention_mask, [token_type_ids], labels
    n_tokens: int                     # real (non-padding) tokens = attention_mask.sum(), exact
    n_examples: int


def collate(split: EncodedSplit, indices, pad_id: int) -> Batch:
    """Pad ``indices`` of ``split`` to the longest among them (dynamic padding)."""
    indices = [int(i) for i in indices]
    width = int(max(split.lengths[i] for i in indices))
    b = len(indices)
    ids = np.full((b, width), pad_id, dtype=np.int64)
    mask = np.zeros((b, width), dtype=np.int64)
    types = np.zeros((b, width), dtype=np.int64) if split.token_type_ids is not None else None
    for row, i in enumerate(indices):
        n = int(split.lengths[i])
        ids[row, :n] = split.input_ids[i]
        mask[row, :n] = 1
        if types is not None:
            types[row, :n] = split.token_type_ids[i]
    tensors = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if types is not None:
        tensors["token_type_ids"] = torch.from_numpy(types)
    if split.kind == "ner":
        lab = np.full((b, width), IGNORE_INDEX, dtype=np.int64)
        for row, i in enumerate(indices):
            lab[row, : len(split.labels[i])] = split.labels[i]
        tensors["labels"] = torch.from_numpy(lab)
    elif split.kind == "classification":
        tensors["labels"] = torch.tensor([split.labels[i] for i in indices], dtype=torch.long)
    elif split.kind == "multilabel":
        tensors["labels"] = torch.from_numpy(np.stack([split.labels[i] for i in indices]))
    else:
        tensors["labels"] = torch.tensor([split.labels[i] for i in indices], dtype=torch.float32)
    # the token count is the attention mask's sum: what the model actually attends to
    return Batch(split.task, tensors, int(mask.sum()), b)


# LEGACY_BATCH_ORDER (runner.study.compat): what checkpoints that record no order used


def epoch_plan(lengths: np.ndarray, batch_size: int, seed: int, task: str,
               epoch: int, order: str = BATCH_ORDER) -> list[np.ndarray]:
    """The batches of ``task``'s ``epoch``: a pure function of its arguments (exact resume)."""
    rng = np.random.default_rng([int(seed), zlib.crc32(task.encode("utf-8")), int(epoch)])
    return length_grouped_batches(lengths, batch_size, rng, order)


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Evaluation order: sorted by length (least padding); predictions are put back by index."""
    order = np.argsort(lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def word_predictions(split: EncodedSplit, i: int, token_pred_ids: np.ndarray,
                     labels: tuple[str, ...]) -> list[str]:
    """Word-level tags of example ``i`` from its sub-token predictions: each word takes its first
    sub-token's tag; words truncated away are tagged "O" (outside any entity)."""
    first = split.word_first[i]
    out = []
    for pos in first:
        out.append(labels[int(token_pred_ids[pos])] if pos >= 0 else "O")
    return out
