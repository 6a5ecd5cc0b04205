"""Contamination speed: every (training task, evaluated task) pair of the prepared tasks.

Fast path: ``runner.data.contamination`` -- words to stable 64-bit values, n-grams as windowed
polynomial hashes in numpy, one sorted index of all tasks' training hashes (a bit per task)
looked up with ``searchsorted``.  Baseline, in the same process, on the same units: the
plain-Python definition -- every unit tokenised with the same ``words()``, one Python set of
n-gram tuples and one of exact keys per training task, each evaluated unit tested against
every task's sets (``runner.data.contamination.unit_grams`` / ``unit_key``).  Both must give the
same unit ids for every pair; the script says so or exits 1.

Goal: ``python -m runner contamination`` over the 13 prepared tasks in under a
minute on 2 cores, the hashing itself in seconds.

    python benchmarks/contamination.py [--data data] [--tasks a,b,...] [--n 13] [--out FILE]

The figures also go to one result document (``benchmark_record``: commit, host, device,
versions), by default under the ignored ``benchmarks/out/``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import benchmark_record

from runner.data import contamination as cont
from runner.data.tasks import TASKS, get_task

SPLITS = ("train",) + cont.EVALUATED_SPLITS


def read_units(data: Path, tasks: list[str]) -> dict[tuple[str, str], tuple[list, list]]:
    return {(t, s): cont.units_of(get_task(t), cont.read_split(data, get_task(t), s))
            for t in tasks for s in SPLITS}


def fast(units: dict, tokens: dict, tasks: list[str], n: int) -> dict:
    """{(evaluated task, split, training task): (exact ids, ngram ids)} by the fast path."""
    enc = {key: cont.encode_tokens(ids, tokens[key], n) for key, (ids, _) in units.items()}
    index = cont.build_indexes([enc[t, "train"] for t in tasks])
    out = {}
    for b in tasks:
        for s in cont.EVALUATED_SPLITS:
            exact, ngram = cont.lookup_all(index, enc[b, s])
            for i, a in enumerate(tasks):
                out[b, s, a] = (cont.selected_ids(enc[b, s], exact[i]),
                                cont.selected_ids(enc[b, s], ngram[i]))
    return out


def word_lists(tokens: tuple) -> list[list[list[str]]]:
    """``tokenise``'s result as each unit's pieces' word lists (masks -> MASK)."""
    codes, uniques, lengths = tokens
    words = [cont.MASK if w[0] == "@" else w for w in uniques]
    flat, units, start = [words[c] for c in codes], [], 0
    for length in lengths:
        unit, piece = [], []
        for w in flat[start:start + length]:
            if w == cont.PIECE_END:
                unit.append(piece)
                piece = []
            else:
                piece.append(w)
        units.append(unit)
        start += length
    return units


def naive(units: dict, tokenised: dict, tasks: list[str], n: int) -> dict:
    """The same result with Python sets of word tuples."""
    sets = {}
    for a in tasks:
        keys = {cont.unit_key(u) for u in tokenised[a, "train"]} - {None}
        grams: set = set()
        for u in tokenised[a, "train"]:
            grams |= cont.unit_grams(u, n)
        sets[a] = (keys, grams)
    out = {}
    for b in tasks:
        for s in cont.EVALUATED_SPLITS:
            ids = units[b, s][0]
            per_unit = [(cont.unit_key(u), cont.unit_grams(u, n)) for u in tokenised[b, s]]
            for a, (keys, grams) in sets.items():
                exact = sorted(i for i, (k, _) in zip(ids, per_unit) if k in keys)
                ngram = sorted(i for i, (_, g) in zip(ids, per_unit) if not g.isdisjoint(grams))
                out[b, s, a] = (exact, ngram)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--n", type=int, default=cont.DEFAULT_N)
    ap.add_argument("--out", default=None, metavar="FILE",
                    help="the result document (default: benchmarks/out/contamination-<UTC>.json)")
    args = ap.parse_args()
    tasks, data = args.tasks.split(","), Path(args.data)

    t0 = time.perf_counter()
    units = read_units(data, tasks)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    tokens = {key: cont.tokenise(pieces) for key, (_ids, pieces) in units.items()}
    t_tok = time.perf_counter() - t0
    tokenised = {key: word_lists(t) for key, t in tokens.items()}   # untimed: the baseline's
    n_units = sum(len(ids) for ids, _ in units.values())
    n_words = sum(len(p) for units_ in tokenised.values() for u in units_ for p in u)
    print(f"{len(tasks)} tasks, {n_units} units, {n_words} words, n = {args.n}")
    print(f"shared by both paths: reading the splits {t_read:.2f} s, tokenising (one regex "
          f"pass per split) {t_tok:.2f} s")

    t0 = time.perf_counter()
    got = fast(units, tokens, tasks, args.n)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    want = naive(units, tokenised, tasks, args.n)
    t_naive = time.perf_counter() - t0
    same = got == want
    overlapping = sum(len(set(e) | set(g)) for e, g in got.values())
    print(f"hashing + matching, fast (numpy hashes, searchsorted):     {t_fast:7.2f} s")
    print(f"hashing + matching, baseline (Python sets of word tuples): {t_naive:7.2f} s")
    print(f"speed-up: {t_naive / t_fast:.1f}x; same unit ids for all {len(got)} pairs: {same} "
          f"({overlapping} overlapping (unit, training task) pairs)")

    t0 = time.perf_counter()
    cont.compute(data, tasks, args.n)
    t_whole = time.perf_counter() - t0
    print(f"the whole command's work (checksums, reading, matching both ways): "
          f"{t_whole:.2f} s (goal: under 60 s on 2 cores)")
    results = {"tasks": tasks, "n": args.n, "units": n_units, "words": n_words,
               "read_s": t_read, "tokenise_s": t_tok, "fast_s": t_fast, "baseline_s": t_naive,
               "speedup": t_naive / t_fast, "same_unit_ids": same,
               "overlapping_pairs": overlapping, "whole_command_s": t_whole}
    doc = benchmark_record.document("contamination", results, package="runner",
                                    goal_met=bool(same and t_whole < 60),
                                    device=benchmark_record.cpu_device())
    print(f"result: {benchmark_record.write(doc, args.out)}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
