"""``python -m stats OUT [--results DIR ...] [--contamination FILE]``: rebuild the paper's
tables, figures and SUMMARY.txt from result folders (no torch). Exit 0 done, 2 bad input."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtl_contract.files import folder_problem
from mtl_contract.schema import EXIT_BAD_INPUT, EXIT_OK
from stats.fileio import StatsInputError

# the most bootstrap resamples accepted: each interval keeps one float64 per resample and
# metric and draws resamples x test units indices (in chunks); 100x the default of 10,000
# still fits memory, 10^11 died with MemoryError (measured)
MAX_RESAMPLES = 1_000_000


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stats",
        description="Read every result.json (+ predictions/<task>.parquet) below the results "
                    "folders and write all_results.csv, statistics.json, the LaTeX tables "
                    "(table_single_task, table_multitask_comparison, table_rq5_token_controlled, "
                    "table_dataset_statistics, table_contamination, table_clean_units, table_blurb, "
                    "the RQ2-RQ4 tables), figures (PDF and PNG) and SUMMARY.txt (opening with "
                    "the Answers: each research question's key numbers and the methodology's "
                    "success criteria marked) into OUT. "
                    "Malformed or partial results are listed and skipped.",
        epilog="Exit codes: 0 done; 2 bad input (a results folder that does not exist or holds "
               "no result.json, an OUT that cannot be a folder, a --contamination FILE that does "
               "not exist); nothing is written then.")
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
    p.add_argument("--equivalence-margin", type=float, default=None, metavar="POINTS",
                   help="RQ5: 'data exposure' needs the seed-level (1 - 2 alpha) interval of "
                        "MT - TC inside +-POINTS (two one-sided tests); otherwise the verdict "
                        "is 'inconclusive' (default: the manifest's [stats] "
                        "equivalence_margin, else 1 point)")
    p.add_argument("--manifest", metavar="FILE", default=None,
                   help="the study's manifest: its [stats] table sets equivalence_margin "
                        "(points); --equivalence-margin overrides it")
    p.add_argument("--contamination", metavar="FILE", default=None,
                   help="train/test overlap file of `python -m runner contamination`: every "
                        "RQ1/RQ5/RQ2 comparison is also reported on its clean test units "
                        "(default: data/CONTAMINATION.json in the working folder, if there). "
                        "A file that does not match the data or the results' checksums is "
                        "refused with one line; the paper then has full-test results only")
    return p


def _contamination_path(given: str | None) -> Path | None:
    """The file named by --contamination (it must exist), else the default if present."""
    from stats.read.contamination import default_path

    if given is None:
        return default_path()
    if not Path(given).is_file():
        raise StatsInputError(given, "contamination file does not exist (run `python -m "
                              "runner contamination`, or leave --contamination out)",
                              where="--contamination")
    return Path(given)


def _equivalence_margin(given: float | None, manifest: str | None) -> float:
    """The RQ5 equivalence margin in points: the command line's, else the manifest's
    ``[stats] equivalence_margin``, else the default (1 point)."""
    from stats.core.significance import EQUIVALENCE_MARGIN
    from stats.read.manifest import stats_options

    if given is not None:
        if not 0 < given < 100:
            raise StatsInputError(None, "must be above 0 and below 100 points",
                                  where="--equivalence-margin")
        return given
    if manifest is not None:
        margin = stats_options(Path(manifest)).get("equivalence_margin")
        if margin is not None:
            return margin
    return 100 * EQUIVALENCE_MARGIN


def _check_inputs(results: list[str]) -> None:
    """Bad input before anything is written: a folder that is missing, or no result.json
    below any of them (a typo'd or not yet run study would otherwise give a paper of "no
    results" files that look like a finished, empty study)."""
    from stats.read.results import result_files

    roots = [Path(r) for r in results]
    for root in roots:
        if not root.is_dir():
            raise StatsInputError(root, "results folder does not exist (give --results DIR)")
    problems: list[str] = []   # unreadable or linked folders: say so, not "no result"
    if not any(next(result_files(root, problems), None) for root in roots):
        if problems:
            raise StatsInputError(None, problems[0])
        where = "this folder" if len(roots) == 1 else "these folders"
        raise StatsInputError(", ".join(results), f"no result.json found below {where} (no "
                              "job has finished there; give the study's results folder)")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from stats.core.study import Options
    from stats.report import build_paper

    try:
        if not 1 <= args.resamples <= MAX_RESAMPLES:
            raise StatsInputError(None, f"must be between 1 and {MAX_RESAMPLES:,} (got "
                                  f"{args.resamples:,})", where="--resamples")
        if not 0 < args.alpha < 1:
            raise StatsInputError(None, "must be between 0 and 1", where="--alpha")
        if not 0 < args.parity_threshold < 1:
            raise StatsInputError(None, "must be between 0 and 1", where="--parity-threshold")
        margin = _equivalence_margin(args.equivalence_margin, args.manifest)
        problem = folder_problem(args.out)
        if problem is not None:
            raise StatsInputError(args.out, problem, where="OUT")
        _check_inputs(args.results or ["results"])
        contamination = _contamination_path(args.contamination)
        report = build_paper(args.out, args.results or ["results"],
                             Options(alpha=args.alpha, resamples=args.resamples, seed=args.seed,
                                     parity_threshold=args.parity_threshold,
                                     equivalence_margin=margin / 100),
                             contamination=contamination)
    except StatsInputError as err:
        for line in getattr(err, "lines", ())[1:]:   # RefusedResults: one line per result
            print(f"refused: {line}", file=sys.stderr)
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"read {report['jobs']} job(s), skipped {len(report['skipped'])} file(s); "
          f"wrote {len(report['written'])} files to {args.out}")
    for path, reason in report["skipped"]:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    cont = report["contamination"]
    # a refused file is one line on stderr (the paper is built anyway, from full test sets)
    print(cont["line"] + (f"; clean-unit results for {cont['clean_rows']} RQ1/RQ5 row(s)"
                          if cont["status"] == "used" else ""),
          file=sys.stderr if cont["status"] == "refused" else sys.stdout)
    if cont.get("tie_line"):
        print(cont["tie_line"], file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
