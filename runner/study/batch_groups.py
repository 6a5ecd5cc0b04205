"""How the engine groups a task's training examples into batches by length -- the rule
runner.ml.batching applies and the compute estimate (runner.observe.estimate) counts the
padding of.  Integers and numpy only.

An epoch's examples are shuffled, cut into mega-batches, each sorted by length and cut into
batches; every example of a batch is padded to the batch's longest.  Mega-batch size
(examples): ``"hf-groups"``, Hugging Face's length grouping, ``batch_size x min(50,
n // (4 x batch_size))`` (at least one batch): at least four groups per epoch, at most 50
batches; ``"groups-of-50"``, always 50 batches.
numpy is imported inside the functions: the manifest and the plan must not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

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


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                           order: str = BATCH_ORDER) -> list[np.ndarray]:
    """One epoch's batches: similar lengths together, random order between batches.

    ``order`` (:data:`BATCH_ORDERS`): ``"hf-groups"``, mega-batches of Hugging Face's size and
    the longest batch first; ``"groups-of-50"``, mega-batches of ``MEGABATCH_FACTOR`` batches
    and no batch moved (the order of checkpoints written before the order was recorded)."""
    import numpy as np

    n = len(lengths)
    mega = group_size(n, batch_size, order)   # checks the order
    perm = rng.permutation(n)
    batches: list[np.ndarray] = []
    for start in range(0, n, mega):
        chunk = perm[start:start + mega]
        # longest first inside the group; stable so ties keep the permutation's order
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    batches = [batches[i] for i in rng.permutation(len(batches))]
    if order == "hf-groups" and batches:
        longest = int(np.argmax([lengths[b].max() for b in batches]))
        batches.insert(0, batches.pop(longest))
    return batches


def padding_ratio(lengths, batch_size: int, order: str = BATCH_ORDER, seed: int = 0,
                  epochs: int = 3) -> float:
    """Tokens the engine processes (each example padded to its batch's longest) over the real
    tokens, for one task's training examples of these ``lengths`` (sub-tokens after
    truncation): the engine's own batches (``length_grouped_batches``) of ``epochs`` shuffles
    of a fixed generator.  1.0 for no examples."""
    import numpy as np

    lengths = np.asarray(lengths, dtype=np.int64)
    real = int(lengths.sum())
    if len(lengths) == 0 or real == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    processed = sum(int(lengths[b].max()) * len(b) for _ in range(epochs)
                    for b in length_grouped_batches(lengths, batch_size, rng, order))
    return processed / (epochs * real)
