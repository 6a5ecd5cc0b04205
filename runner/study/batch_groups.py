"""How the engine groups a task's training examples into batches by length -- the rule
runner.ml.batching applies and the compute estimate (runner.observe.estimate) counts the
padding of.  Integers and numpy only.

An epoch's examples are shuffled, cut into mega-batches, each sorted by length and cut into
batches; every example of a batch is padded to the batch's longest.  Mega-batch size
(examples): ``"hf-groups"``, Hugging Face's length grouping, ``batch_size x min(50,
n // (4 x batch_size))`` (at least one batch): at least four groups per epoch, at most 50
batches; ``"groups-of-50"``, always 50 batches.
"""

from __future__ import annotations

MEGABATCH_FACTOR = 50  # at most 50 batches' examples sorted together (as Hugging Face's)
BATCH_ORDERS = ("hf-groups", "groups-of-50")
BATCH_ORDER = "hf-groups"      # new jobs


def group_size(n: int, batch_size: int, order: str = BATCH_ORDER) -> int:
    """Examples per mega-batch of an epoch of ``n`` examples."""
    if order not in BATCH_ORDERS:
        raise ValueError(f"unknown batch order {order!r} (known: {', '.join(BATCH_ORDERS)})")
    if order == "groups-of-50":
        return max(batch_size * MEGABATCH_FACTOR, batch_size)
    return batch_size * max(1, min(MEGABATCH_FACTOR, n // (4 * batch_size)))


def padding_ratio(lengths, batch_size: int, order: str = BATCH_ORDER, seed: int = 0,
                  epochs: int = 3) -> float:
    """Tokens the engine processes (each example padded to its batch's longest) over the real
    tokens, for one task's training examples of these ``lengths`` (sub-tokens after
    truncation), averaged over ``epochs`` shuffles of a fixed generator.  1.0 for no
    examples."""
    import numpy as np

    lengths = np.asarray(lengths, dtype=np.int64)
    n, real = len(lengths), int(lengths.sum())
    if n == 0 or real == 0:
        return 1.0
    mega = group_size(n, batch_size, order)
    rng = np.random.default_rng(seed)
    processed = 0
    for _ in range(epochs):
        shuffled = lengths[rng.permutation(n)]
        for start in range(0, n, mega):
            group = np.sort(shuffled[start:start + mega])[::-1]
            longest = group[::batch_size]                       # each batch's first, longest
            sizes = np.minimum(batch_size, len(group) - np.arange(0, len(group), batch_size))
            processed += int((longest * sizes).sum())
    return processed / (epochs * real)
