"""`similarity` (RQ4: task similarity from the prepared training data, runner/recipes/
similarity.py) and the same computation as `run`'s after-run step."""

from __future__ import annotations

import argparse
import sys

from mtl_contract.schema import EXIT_BAD_INPUT
from runner.errors import InputError


def declare_similarity(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Task similarity (RQ4) from the prepared training data: label-schema Jaccard, word and "
        "word-piece Jaccard, unigram Jensen-Shannon divergence (bits), written atomically to "
        "task_similarity.json. --tasks: the named tasks into --out. --manifest: the manifest's "
        "tasks into <results>/task_similarity.json (or --out), word pieces under the "
        "manifest's model tokenizer when it has one model in a local folder (minilm), else "
        "word-level only. `run` does the --manifest form itself after a study with task "
        "pairs has finished (its after-run step).")
    parser.set_defaults(handler=similarity_command)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                       help="task names (data/<task>/), comma- or space-separated: a,b or a b")
    which.add_argument("--manifest", default=None, help="a study manifest: its tasks")
    parser.add_argument("--data-dir", default="data", help="prepared data (default: data)")
    parser.add_argument("--results-dir", default=None,
                        help="with --manifest: the study's results folder (default: the "
                             "manifest's)")
    parser.add_argument("--out", default=None,
                        help="output JSON file (needed with --tasks), e.g. "
                             "results/<study>/task_similarity.json")
    parser.add_argument("--tokenizer", default=None,
                        help="model folder or tokenizer.json of a fast tokenizer, for the "
                             "word-piece Jaccard (left out: with --manifest its model's as "
                             "above, else that measure is not computed)")
    parser.add_argument("--split", default="train", choices=("train", "validation", "test"),
                        help="the split the tasks are compared on (default: train)")


def similarity_command(args: argparse.Namespace) -> int:
    """Compute and write the document; the exit code (bad input: one line on stderr, 2)."""
    from runner.recipes import similarity

    try:
        if args.manifest is not None:
            from runner.study.manifest import load_manifest
            manifest = load_manifest(args.manifest)
            return similarity.write_for_manifest(
                manifest, args.results_dir or manifest.study.results, args.data_dir,
                args.out, args.tokenizer, args.split)
        if args.out is None:
            raise InputError(None, "--tasks needs --out FILE", where="--out")
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    tasks = [t.strip() for item in args.tasks for t in item.split(",") if t.strip()]
    return similarity.write_tasks(tasks, args.data_dir, args.out, args.tokenizer, args.split)


def similarity_step(manifest, results_dir, data_dir, code: int) -> int:
    """`run`'s after-run step (RQ4): a run that finished every job (``code`` 0) of a manifest
    with a task_sets = "pairs" experiment writes the study's task_similarity.json when it is
    absent, and says so; a failure here is a warning, never the run's.  Returns ``code``."""
    from runner.recipes import similarity
    from runner.study.manifest import has_pair_experiment

    out = results_dir / "task_similarity.json"
    if code != 0 or out.exists() or not has_pair_experiment(manifest):
        return code
    print(f"after the jobs: RQ4 task similarity of the study's tasks -> {out}", flush=True)
    if similarity.write_for_manifest(manifest, results_dir, data_dir) != 0:
        print(f"warning: {out} not written (python -m runner similarity --manifest ...)",
              file=sys.stderr)
    return code
