"""``python -m runner``: run, plan or check a study described by a manifest.

    python -m runner MANIFEST [--results-dir DIR] [--data-dir data] [--time-budget 11h30m]
                              [--retry-failed] [--worker-id ID]       (same as `run`)
                              [--workers auto|N]                 (one process per GPU)
                              [--executor ray [--address ADDR] [--cpus-per-job N]]
                              [--tracking tensorboard,mlflow,wandb|none]
    python -m runner plan MANIFEST [--data-dir data] [--results-dir DIR] [--json]
    python -m runner plan MANIFEST --estimate [--gpu t4|p100|a100|h100|cpu]
                              [--throughput FILE] [--quota-hours 30] [--json]
                              [--devices-per-session N]
    python -m runner status MANIFEST [--data-dir data] [--results-dir DIR] [--json]
    python -m runner prepare ...                                      (prepare the data)
    python -m runner token-lengths [DATA_DIR]        (data/TOKEN_LENGTHS.json, the plan's)
    python -m runner evaluate MANIFEST [--levels fp32,int8] [--batch-size 32] ...   (RQ3)
    python -m runner similarity --tasks a,b,... --out FILE | --manifest MANIFEST    (RQ4)
    python -m runner contamination [--manifest M | --tasks a,b] [--n 13] [--out FILE]   (RQ1)
    python -m runner selfcheck [--device auto|cuda|cpu] [--out selfcheck]  (a new machine:
                              jobs, kill and resume, --workers auto, tokens/s and MFU)

One module per command group declares its commands' options and handles them:
runner/cli/run.py (run, with its after-run step), plan.py (plan, status), data.py
(prepare, token-lengths, contamination), similarity.py, evaluate.py, selfcheck.py; study.py
holds what run, plan and status share (the manifest and its results folder).  A command's
module is imported only when that command is given, and heavy libraries only inside its
handler.

Exit codes: 0 all done, 1 some job failed (the others went on), 2 bad input (one line on
stderr, nothing written), 3 time budget reached or interrupted: run the same command again.
A closed stdout (``python -m runner status M | head -2``) ends any command quietly with
exit 1: not 0, because the reader got only part of the output and, for ``run``, jobs may
be left (a script with ``set -o pipefail`` must not take that for success), and nonzero as
a tool killed by SIGPIPE would be; ``run`` gives its claimed job back first.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from mtl_contract.schema import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_TIME_BUDGET
from runner.errors import InputError

# command -> (its module under runner.cli, the one-line help of `python -m runner --help`)
COMMANDS = {
    "run": ("run", ("run every ready job (default command), then the after-run step "
                    "(RQ4 task similarity for a study with task pairs)")),
    "plan": ("plan", "print the jobs and their states"),
    "status": ("plan", "counts per state, progress, failures"),
    "prepare": ("data", "prepare the datasets (python -m runner prepare --help)"),
    "token-lengths": ("data", ("count the prepared examples' token lengths into "
                               "DATA_DIR/TOKEN_LENGTHS.json (the plan's design check reads it)")),
    "contamination": ("data", ("RQ1: which validation/test units overlap which task's "
                               "training data (python -m runner contamination --help)")),
    "evaluate": ("evaluate", ("RQ3: evaluate finished jobs' best weights at "
                              "fp32/fp16/bf16/int8/nf4")),
    "similarity": ("similarity", ("RQ4: task similarity (label, word, word-piece Jaccard; "
                                  "unigram JSD)")),
    "selfcheck": ("selfcheck", ("check this machine first: tiny jobs of every strategy at the "
                                "card's precision, kill -9 and resume, --workers auto, tokens/s "
                                "and MFU (writes the --throughput file of plan --estimate)")),
}


class _Command(argparse.ArgumentParser):
    """A subcommand's parser that declares its options when it is the command given: its
    module's ``declare_<command>(parser)`` sets the description, the options and the
    handler (``set_defaults(handler=...)``).  `status` and `--help` so never import
    `prepare`'s or `contamination`'s modules."""

    def __init__(self, *args, command: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._command = command

    def parse_known_args(self, args=None, namespace=None):
        if self._command is not None:
            command, self._command = self._command, None
            module = importlib.import_module(f"runner.cli.{COMMANDS[command][0]}")
            getattr(module, "declare_" + command.replace("-", "_"))(self)
        return super().parse_known_args(args, namespace)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; each command's module declares its own options."""
    parser = argparse.ArgumentParser(
        prog="python -m runner",
        description="Run a multi-task transfer study described by a TOML manifest. "
                    "`python -m runner MANIFEST` is short for `python -m runner run MANIFEST`.",
        epilog="Exit codes: 0 all jobs done; 1 some jobs failed (the others went on); "
               "2 bad input; 3 time budget reached or interrupted (SIGTERM, Ctrl-C): "
               "run the same command again to resume.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Command)
    for command, (_, help_text) in COMMANDS.items():
        sub.add_parser(command, help=help_text, command=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m runner ARGV``: the exit code."""
    try:
        return _main(argv)
    except BrokenPipeError:   # whoever read our stdout stopped reading (`| head`)
        _silence_stdout()
        return EXIT_FAILED


def _main(argv: list[str] | None = None) -> int:
    argv = _join_dash_values(list(sys.argv[1:] if argv is None else argv))
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "run")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.handler(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_TIME_BUDGET


def _silence_stdout() -> None:
    """Point stdout's file descriptor at /dev/null: Python flushes stdout once more at
    exit, and that flush into the closed pipe would print "Exception ignored ...
    BrokenPipeError" on stderr."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):   # replaced by a non-file (tests)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


# options whose value may start with "-" (a negative --time-budget must get its one-line
# error, not argparse's usage block): "--time-budget -5s" is read as "--time-budget=-5s"
_VALUE_OPTIONS = ("--time-budget", "--workers", "--results-dir", "--data-dir", "--worker-id")


def _join_dash_values(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        if argv[i] in _VALUE_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-") \
                and not argv[i + 1].startswith("--"):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out
