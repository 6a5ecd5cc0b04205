"""How often the RQ5 verdicts are wrong, on simulated studies whose truth is set.

Each study is a folder of result.json files written per ``results/README.md`` by the
synthetic generator (``tests/stats/synthetic.seed_level_study``: score = base + shared seed
effect + gain + independent per-job noise; it computes nothing with ``stats``), then read
and analysed by ``python -m stats``'s own loader and analysis, exactly as a real study
(seed-level statistics; no predictions, so no test-set bootstrap). One model, 3 tasks, token
parity holding. Scenarios (the gain is on bc2gm; the other tasks have none):

* ``null``: MT = ST = TC in truth. Wrong: any GENUINE TRANSFER (per study and per row).
* ``mt_tc_plus3``: MT − TC = +3 points and MT − ST = +3 (TC = ST: the gain is transfer).
  Wrong: DATA EXPOSURE on bc2gm.
* the reported case: 3 seeds, MT − TC = +2 points, MT − ST = +5. Wrong: DATA EXPOSURE.
* ``mt_equals_tc`` (the power side, not an error rate): MT = TC = ST + 3 points. Right:
  DATA EXPOSURE on bc2gm; how often the test shows it.

Baseline, from the same rows in the same process: the rule before the equivalence test (exposure
whenever MT > ST is significant and MT > TC is not), computed from each row's Holm p-values.
Goal: both error rates of the current rule at most 5%.

    python benchmarks/verdict_error_rates.py [--studies 100] [--seeds 5] [--noise-sd 1.4]
        [--seed-sd 0] [--margin 1] [--equal-seeds 10]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from stats.core.analysis import analyse
from stats.core.significance import EXPOSURE, GENUINE
from stats.core.study import Options, Study
from stats.read.results import load_results
from tests.stats.synthetic import seed_level_study, write_results

TASKS = ("bc2gm", "chemprot", "biosses")


def old_rule(row: dict, alpha: float) -> str | None:
    """The verdict of a compared row before the equivalence test: significant MT > ST and MT > TC is
    genuine; significant MT > ST alone is exposure; None otherwise."""
    st = row.get("mt_minus_st") or {}
    if not row["parity_summary"]["holds"]:
        return None

    def sig(diff, p):
        return diff is not None and p is not None and diff > 0 and p < alpha

    if not sig(st.get("mean_diff"), st.get("p_holm")) or row["p_holm"] is None:
        return None
    return GENUINE if sig(row["mean_diff"], row["p_holm"]) else EXPOSURE


def simulate(root: Path, k: int, args, mt_gain: float, tc_gain: float, seeds: int) -> list[dict]:
    """One study's RQ5 rows (the one family: MT vs the total-parity TC)."""
    folder = root / f"s{k}"
    results = seed_level_study(np.random.default_rng([k, seeds, int(100 * mt_gain)]),
                               tasks=TASKS, seeds=tuple(range(1, seeds + 1)),
                               mt_gain={"bc2gm": mt_gain}, tc_gain={"bc2gm": tc_gain},
                               seed_sd=args.seed_sd / 100, train_sd=args.noise_sd / 100)
    write_results(folder, results)
    loaded = load_results([folder])
    opt = Options(alpha=args.alpha, equivalence_margin=args.margin / 100)
    an = analyse(Study(loaded.jobs, loaded.skipped, opt), bootstrap=False)
    shutil.rmtree(folder)
    (fam,) = an.rq5
    return fam["rows"]


def run(name: str, args, mt_gain: float, tc_gain: float, seeds: int, wrong, root: Path):
    start = time.perf_counter()
    now = {"study": 0, "row": 0, "rows": 0}
    old = {"study": 0, "row": 0}
    for k in range(args.studies):
        rows = simulate(root, k, args, mt_gain, tc_gain, seeds)
        hits = [wrong(r, r["verdict"]) for r in rows]
        old_hits = [wrong(r, old_rule(r, args.alpha)) for r in rows]
        now["study"] += any(hits)
        now["row"] += sum(hits)
        now["rows"] += len(rows)
        old["study"] += any(old_hits)
        old["row"] += sum(old_hits)
    n = args.studies
    took = time.perf_counter() - start
    print(f"{name}: {n} studies x {len(TASKS)} tasks, {seeds} seeds, noise sd "
          f"{args.noise_sd:g} points per job (+ shared seed sd {args.seed_sd:g}), margin "
          f"±{args.margin:g} points, alpha {args.alpha:g} ({took:.1f} s)")
    print(f"  current rule: {now['study']}/{n} studies = {now['study'] / n:.1%}; "
          f"{now['row']}/{now['rows']} rows = {now['row'] / now['rows']:.1%}")
    print(f"  old rule (baseline): {old['study']}/{n} studies = {old['study'] / n:.1%}; "
          f"{old['row']}/{now['rows']} rows = {old['row'] / now['rows']:.1%}")
    return now["study"] / n, old["study"] / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--studies", type=int, default=100)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--equal-seeds", type=int, default=10,
                   help="seeds of the MT = TC (power) scenario")
    p.add_argument("--noise-sd", type=float, default=1.4,
                   help="independent seed-to-seed sd of every job's score, points")
    p.add_argument("--seed-sd", type=float, default=0.0,
                   help="seed effect shared by the strategies of one seed, points")
    p.add_argument("--margin", type=float, default=1.0, help="equivalence margin, points")
    p.add_argument("--alpha", type=float, default=0.05)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        null, _ = run("null (MT = ST = TC): false GENUINE TRANSFER", args, 0.0, 0.0,
                      args.seeds, lambda r, v: v == GENUINE, root)
        plus3, _ = run("MT − TC = +3 points (TC = ST): false DATA EXPOSURE on bc2gm", args,
                       0.03, 0.0, args.seeds,
                       lambda r, v: r["task"] == "bc2gm" and v == EXPOSURE, root)
        issue, _ = run("the issue's case, 3 seeds, MT − TC = +2 points (MT − ST = +5): false "
                       "DATA EXPOSURE on bc2gm", args, 0.05, 0.03, 3,
                       lambda r, v: r["task"] == "bc2gm" and v == EXPOSURE, root)
        run("MT = TC = ST + 3 points (power, not an error): DATA EXPOSURE on bc2gm", args,
            0.03, 0.03, args.equal_seeds,
            lambda r, v: r["task"] == "bc2gm" and v == EXPOSURE, root)
    ok = null <= 0.05 and plus3 <= 0.05 and issue <= 0.05
    print(f"goal (every error rate <= 5% per study): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
