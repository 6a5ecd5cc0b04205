"""`evaluate` (RQ3): finished jobs' best weights at each precision level
(runner/recipes/quantized_eval.py)."""

from __future__ import annotations

import argparse

from mtl_contract.schema import EXIT_FAILED
from runner.cli.study import study_arguments


def declare_evaluate(ev: argparse.ArgumentParser) -> None:
    from mtl_contract.schema import LEVELS

    ev.description = (
        "For every finished job of the manifest (result.json present), rebuild the "
        "model with the best weights it kept and write <job_dir>/evaluation/<level>.json: the "
        "primary metric on the job's own test subset, ECE (15 bins) before/after temperature "
        "scaling fitted on its validation subset, latency per example and throughput at "
        "--batch-size (after a warm-up batch), peak memory, size on disk. fp16/bf16 need a "
        "CUDA GPU; nf4 needs bitsandbytes and a CUDA GPU or bitsandbytes' CPU backend; int8 "
        "(dynamic quantisation of nn.Linear) runs on "
        "CPU; a level that cannot run here is written as skipped with the reason. A level "
        "whose file exists is not computed again (--force does).")
    study_arguments(ev)
    ev.set_defaults(handler=evaluate_command)
    ev.add_argument("--levels", default=",".join(LEVELS),
                    help=f"comma-separated precision levels (default: {','.join(LEVELS)})")
    ev.add_argument("--batch-size", type=int, default=32,
                    help="examples per inference batch for every level (default 32)")
    ev.add_argument("--experiments", default=None, metavar="NAME,...",
                    help="only the jobs of these experiments (default: all)")
    ev.add_argument("--max-test-examples", type=int, default=None, metavar="N",
                    help="at most N validation and test examples per task, drawn from the "
                         "job's own subsets (default: exactly the job's, so numbers compare "
                         "with its result.json)")
    ev.add_argument("--force", action="store_true", help="recompute levels already written")


def evaluate_command(args: argparse.Namespace) -> int:
    from runner.recipes.quantized_eval import evaluate_manifest, parse_levels, parse_names

    summary = evaluate_manifest(args.manifest, results_dir=args.results_dir,
                                data_dir=args.data_dir, levels=parse_levels(args.levels),
                                batch_size=args.batch_size,
                                experiments=parse_names(args.experiments),
                                max_test_examples=args.max_test_examples, force=args.force)
    return EXIT_FAILED if summary.skipped_jobs else 0
