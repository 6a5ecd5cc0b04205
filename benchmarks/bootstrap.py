"""Bootstrap speed: 10,000 resamples of entity-F1 on the BC2GM test set (5,038 sentences).

Fast path: per-sentence tp/fp/fn (the predictions' sufficient statistics) resampled with
``stats.core.bootstrap.resample_blocks`` (draw counts @ X). Baseline: the naive loop that builds
each resampled corpus and calls ``seqeval.metrics.f1_score`` on it, in the same process;
it is timed on a few resamples and extrapolated per resample. Both use the same drawn
indices, and the fast path's F1 on those resamples must equal seqeval's.

Goal: under 2 s on one core, at least 500x the naive loop, point estimate equal
to seqeval's.

    python benchmarks/bootstrap.py [--resamples 10000] [--naive 20] [--data data] [--out FILE]

The figures also go to one result document (``benchmark_record``: commit, host, device,
versions), by default under the ignored ``benchmarks/out/``.
"""

from __future__ import annotations

import os

# one core, as the goal states (set before numpy loads its BLAS)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import time
from pathlib import Path

import benchmark_record
import numpy as np

from stats.core.bootstrap import Block, index_chunks, observed, resample_blocks

BC2GM_TEST_SENTENCES = 5038


def synthetic_gold(rng: np.random.Generator, n: int) -> list[list[str]]:
    """BIO tags shaped like BC2GM test: ~26 words a sentence, ~1.3 gene mentions a
    sentence (6,325 in 5,038), mentions 1–4 words long."""
    out = []
    for _ in range(n):
        length = int(np.clip(rng.normal(26, 10), 5, 120))
        tags = ["O"] * length
        for _ in range(rng.poisson(1.3)):
            span = int(rng.choice([1, 2, 3, 4], p=[0.5, 0.3, 0.15, 0.05]))
            start = int(rng.integers(0, max(1, length - span)))
            if all(t == "O" for t in tags[max(0, start - 1):start + span + 1]):
                tags[start] = "B"
                for k in range(start + 1, min(length, start + span)):
                    tags[k] = "I"
        out.append(tags)
    return out


def perturb(rng: np.random.Generator, gold: list[list[str]]) -> list[list[str]]:
    """A plausible tagger: misses ~15% of mentions, truncates ~8%, adds spurious ones."""
    from seqeval.metrics.sequence_labeling import get_entities

    pred = []
    for tags in gold:
        p = list(tags)
        for _, start, end in get_entities(tags):
            r = rng.uniform()
            if r < 0.15:
                p[start:end + 1] = ["O"] * (end - start + 1)
            elif r < 0.23 and end > start:
                p[end] = "O"
        if rng.uniform() < 0.12:
            k = int(rng.integers(0, len(p)))
            if p[k] == "O" and (k + 1 == len(p) or p[k + 1] != "I"):
                p[k] = "B"
        pred.append(p)
    return pred


def sentence_counts(gold: list[list[str]], pred: list[list[str]]) -> np.ndarray:
    """Per-sentence tp, fp, fn of exact entity matches (seqeval's entity extraction)."""
    from seqeval.metrics.sequence_labeling import get_entities

    x = np.zeros((len(gold), 3))
    for i, (g, p) in enumerate(zip(gold, pred)):
        ge, pe = set(get_entities(g)), set(get_entities(p))
        x[i] = (len(ge & pe), len(pe - ge), len(ge - pe))
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--naive", type=int, default=20, help="naive resamples to time")
    ap.add_argument("--data", default="data", help="folder with bc2gm/test.parquet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, metavar="FILE",
                    help="the result document (default: benchmarks/out/bootstrap-<UTC>.json)")
    args = ap.parse_args()
    from seqeval.metrics import f1_score

    rng = np.random.default_rng(args.seed)
    path = Path(args.data) / "bc2gm" / "test.parquet"
    if path.exists():
        import pandas as pd

        gold = [list(t) for t in pd.read_parquet(path, columns=["tags"])["tags"]]
        source = f"{path} ({len(gold)} sentences)"
    else:
        gold = synthetic_gold(rng, BC2GM_TEST_SENTENCES)
        source = (f"synthetic BIO tags, {len(gold)} sentences ({path} not found), "
                  f"{sum(t.count('B') for t in gold)} gold mentions")
    pred = perturb(rng, gold)
    n = len(gold)
    x = sentence_counts(gold, pred)
    block = Block("counts", {"kind": "counts"}, "f1", x)

    point_fast = float(observed([block])[0])
    point_seqeval = float(f1_score(gold, pred))
    t0 = time.perf_counter()
    dist = resample_blocks([block], args.resamples, args.seed)[:, 0]
    fast_s = time.perf_counter() - t0

    first = next(index_chunks(n, args.naive, args.seed))[: args.naive]
    t0 = time.perf_counter()
    naive = [f1_score([gold[i] for i in row], [pred[i] for i in row]) for row in first]
    naive_per = (time.perf_counter() - t0) / len(first)
    same = np.allclose(naive, dist[: len(first)], rtol=0, atol=1e-12)

    lo, hi = np.quantile(dist, [0.025, 0.975])
    print(f"data: {source}")
    print(f"point estimate: fast {point_fast:.12f}, seqeval {point_seqeval:.12f}, "
          f"equal: {abs(point_fast - point_seqeval) < 1e-12}")
    print(f"fast: {args.resamples} resamples in {fast_s:.3f} s "
          f"({1e6 * fast_s / args.resamples:.1f} us/resample), 95% CI [{lo:.4f}, {hi:.4f}]")
    print(f"naive seqeval loop: {naive_per * 1e3:.1f} ms/resample (timed {len(first)}), "
          f"extrapolated {naive_per * args.resamples:.1f} s for {args.resamples}")
    speedup = naive_per * args.resamples / fast_s
    equal = abs(point_fast - point_seqeval) < 1e-12
    print(f"speed-up: {speedup:.0f}x; first {len(first)} resamples identical to seqeval: {same}")
    met = bool(fast_s < 2 and speedup >= 500 and same and equal)
    print(f"goal (< 2 s, >= 500x, equal point): {'met' if met else 'NOT met'}")
    results = {"data": source, "resamples": args.resamples, "seed": args.seed,
               "point_fast": point_fast, "point_seqeval": point_seqeval, "fast_s": fast_s,
               "ci95": [float(lo), float(hi)], "naive_s_per_resample": naive_per,
               "naive_resamples_timed": len(first), "speedup": speedup,
               "first_resamples_identical": bool(same)}
    doc = benchmark_record.document("bootstrap", results, package="stats", goal_met=met,
                                    device=benchmark_record.cpu_device(threads=1))
    print(f"result: {benchmark_record.write(doc, args.out)}")


if __name__ == "__main__":
    main()
