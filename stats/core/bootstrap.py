"""Bootstrap over test units from sufficient statistics, in bounded memory.

Resample b rows of unit indices at a time (``max_cells`` bounds b × n, ~16 MB of counts),
turn them into a b × n matrix W of draw counts with one ``np.bincount``, and get every
resample's column sums as ``W @ X``. A metric is then a vectorised function of the sums
(:mod:`stats.core.metrics`), never a metric call per resample. All blocks (a system's seeds,
or two systems' matched seeds) share the same drawn indices, which is what pairs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from stats.core.metrics import metrics_from_sums, pairs_metrics

MAX_CELLS = 2_000_000  # b × n per chunk: 16 MB of float64 counts


@dataclass(frozen=True)
class Block:
    """One system-seed's statistics on the shared, aligned test units (row i = unit i)."""

    kind: str  # stat_spec.kind
    spec: dict[str, Any]
    metric: str  # which metric of this block is resampled
    x: np.ndarray  # n × k from stats.core.metrics.sufficient_matrix

    def value(self, sums: np.ndarray | None, gold: np.ndarray | None,
              pred: np.ndarray | None, n: int) -> np.ndarray:
        if self.kind == "pairs":
            return pairs_metrics(gold, pred, (self.metric,))[self.metric]
        return metrics_from_sums(self.kind, self.spec, sums, n, (self.metric,))[self.metric]


def index_chunks(n: int, resamples: int, seed: int,
                 max_cells: int = MAX_CELLS) -> Iterator[np.ndarray]:
    """Yield int32 arrays (b, n) of unit indices drawn with replacement; fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    rows = max(1, min(resamples, max_cells // max(n, 1)))
    done = 0
    while done < resamples:
        b = min(rows, resamples - done)
        yield rng.integers(0, n, size=(b, n), dtype=np.int32)
        done += b


def draw_counts(idx: np.ndarray) -> np.ndarray:
    """(b, n) indices -> (b, n) float64 counts of how often each unit was drawn."""
    b, n = idx.shape
    offsets = (np.arange(b, dtype=np.int64) * n)[:, None]
    return np.bincount((idx + offsets).ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def observed(blocks: list[Block]) -> np.ndarray:
    """Each block's metric on the full test set (shape (len(blocks),))."""
    n = blocks[0].x.shape[0]
    out = []
    for blk in blocks:
        if blk.kind == "pairs":
            out.append(float(blk.value(None, blk.x[:, 0], blk.x[:, 1], n)))
        else:
            out.append(float(blk.value(blk.x.sum(0), None, None, n)))
    return np.asarray(out)


def resample_blocks(blocks: list[Block], resamples: int, seed: int,
                    max_cells: int = MAX_CELLS) -> np.ndarray:
    """(resamples, len(blocks)) matrix: each block's metric on each bootstrap resample.

    All blocks must have the same n (units aligned by unit_id) and see the same draws.
    """
    n = blocks[0].x.shape[0]
    if any(b.x.shape[0] != n for b in blocks):
        raise ValueError("blocks must be aligned on the same test units")
    summed = [i for i, b in enumerate(blocks) if b.kind != "pairs"]
    # one matmul for every sum-sufficient block: columns of all blocks side by side
    x_all = np.hstack([blocks[i].x for i in summed]) if summed else None
    bounds = np.cumsum([0] + [blocks[i].x.shape[1] for i in summed])
    out = np.empty((resamples, len(blocks)))
    start = 0
    for idx in index_chunks(n, resamples, seed, max_cells):
        b = idx.shape[0]
        if x_all is not None:
            sums = draw_counts(idx) @ x_all
            for j, i in enumerate(summed):
                out[start:start + b, i] = blocks[i].value(sums[:, bounds[j]:bounds[j + 1]],
                                                          None, None, n)
        for i, blk in enumerate(blocks):
            if blk.kind == "pairs":
                out[start:start + b, i] = blk.value(None, blk.x[idx, 0], blk.x[idx, 1], n)
        start += b
    return out
