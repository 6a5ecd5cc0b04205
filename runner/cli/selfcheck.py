"""`selfcheck`: the first command on a new machine (runner/recipes/selfcheck.py)."""

from __future__ import annotations

import argparse
import os


def declare_selfcheck(p: argparse.ArgumentParser) -> None:
    p.description = (
        "The first command on a new machine (runner/recipes/selfcheck.py): random-weight "
        "MiniLM- and BERT-base-shaped encoders (no hub access), a tiny study of single-task, "
        "multi-task and token-controlled jobs run with --workers auto (one worker per visible "
        "GPU) at the card's precision, one run SIGKILLed after its first checkpoint and "
        "resumed to the uninterrupted result, and training tokens/s and MFU per model "
        "written to OUT/throughput.json for `plan --estimate --throughput`. Exit 0 every "
        "check passed, 1 one failed, 2 bad input. About 10 minutes on one T4; --device cpu "
        "runs the same checks in CPU mode in a minute or two.")
    p.set_defaults(handler=selfcheck_command)
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="cuda: fail (exit 2) when no GPU is visible; cpu: hide the GPUs "
                        "(CPU mode: a 2-layer job model, a few throughput steps); auto: the "
                        "GPU when there is one (default)")
    p.add_argument("--out", default="selfcheck",
                   help="output folder (default: selfcheck); an earlier selfcheck's is "
                        "replaced, any other non-empty folder refused")
    p.add_argument("--data-dir", default="data", help="prepared data (default: data)")
    p.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                   help="training precision (default auto: bf16 where the GPU has it in "
                        "hardware, else fp16 with loss scaling; fp32 on CPU)")
    p.add_argument("--models", default=None, metavar="NAME,...",
                   help="shapes whose throughput is measured: minilm, bert-base, tiny "
                        "(default minilm,bert-base)")
    p.add_argument("--job-model", default=None, metavar="NAME",
                   help="shape of the tiny study's encoder (default: minilm on a GPU, "
                        "tiny on CPU)")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps per throughput run (default 60 on a GPU, 4 on CPU)")
    p.add_argument("--keep-models", action="store_true",
                   help="keep the random-weight model folders under OUT/models")


def selfcheck_command(args: argparse.Namespace) -> int:
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""   # before torch is imported, and for children
    from runner.recipes import selfcheck

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    return selfcheck.run(args.out, args.data_dir, args.device, args.precision, models,
                         args.steps, args.job_model, args.keep_models)
