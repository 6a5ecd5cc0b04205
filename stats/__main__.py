"""``python -m stats OUT [--results DIR ...]``: rebuild the paper's tables, figures and
SUMMARY.txt from result folders (no torch). Exit 0 done, 2 bad input."""

from __future__ import annotations

import argparse
import sys

from stats.fileio import EXIT_BAD_INPUT, EXIT_OK, StatsInputError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stats",
        description="Read every result.json (+ predictions/<task>.parquet) below the results "
                    "folders and write all_results.csv, statistics.json, the LaTeX tables "
                    "(table_single_task, table_multitask_comparison, table_rq5_token_controlled, "
                    "table_dataset_statistics), figures (PDF and PNG) and SUMMARY.txt into OUT. "
                    "Malformed or partial results are listed and skipped.",
        epilog="Exit codes: 0 done; 2 bad input (e.g. a results folder that does not exist).")
    p.add_argument("out", metavar="OUT", help="folder to write into (created if missing), e.g. paper/")
    p.add_argument("--results", metavar="DIR", action="append", default=None,
                   help="results folder to scan recursively; repeat for several (default: results/)")
    p.add_argument("--parity-threshold", type=float, default=0.05, metavar="FRACTION",
                   help="token parity holds when |MT - TC| / MT is below this (default 0.05)")
    p.add_argument("--resamples", type=int, default=10_000,
                   help="bootstrap resamples over test examples and seeds (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap random seed (default 0)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="significance level after Holm correction (default 0.05)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from stats.analysis import Options
    from stats.report import build_paper

    try:
        if args.resamples < 1:
            raise StatsInputError(None, "must be at least 1", where="--resamples")
        if not 0 < args.alpha < 1:
            raise StatsInputError(None, "must be between 0 and 1", where="--alpha")
        if not 0 < args.parity_threshold < 1:
            raise StatsInputError(None, "must be between 0 and 1", where="--parity-threshold")
        report = build_paper(args.out, args.results or ["results"],
                             Options(alpha=args.alpha, resamples=args.resamples, seed=args.seed,
                                     parity_threshold=args.parity_threshold))
    except StatsInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"read {report['jobs']} job(s), skipped {len(report['skipped'])} file(s); "
          f"wrote {len(report['written'])} files to {args.out}")
    for path, reason in report["skipped"]:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
