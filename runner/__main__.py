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
    python -m runner evaluate MANIFEST [--levels fp32,int8] [--batch-size 32] ...   (RQ3)
    python -m runner similarity --tasks a,b,... --out FILE | --manifest MANIFEST    (RQ4)
    python -m runner contamination [--manifest M | --tasks a,b] [--n 13] [--out FILE]   (RQ1)
    python -m runner selfcheck [--device auto|cuda|cpu] [--out selfcheck]  (a new machine:
                              jobs, kill and resume, --workers auto, tokens/s and MFU)

Exit codes: 0 all done, 1 some job failed (the others went on), 2 bad input (one line on
stderr, nothing written), 3 time budget reached or interrupted: run the same command again.
A closed stdout (``python -m runner status M | head -2``) ends any command quietly with
exit 1: not 0, because the reader got only part of the output and, for ``run``, jobs may
be left (a script with ``set -o pipefail`` must not take that for success), and nonzero as
a tool killed by SIGPIPE would be; ``run`` gives its claimed job back first.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

from mtl_contract.schema import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_TIME_BUDGET, LEVELS
from runner.errors import InputError

COMMANDS = ("run", "plan", "status", "prepare", "evaluate", "similarity", "contamination",
            "selfcheck")


class _Command(argparse.ArgumentParser):
    """A subcommand's parser that declares its options (``declare(parser)``) when it is the
    command given: a command loads only its own module (`prepare` and `contamination` bring
    numpy and pyarrow, which `status` need not wait for)."""

    def __init__(self, *args, declare=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._declare = declare

    def parse_known_args(self, args=None, namespace=None):
        if self._declare is not None:
            declare, self._declare = self._declare, None
            declare(self)   # its options, description and handler (set_defaults)
        return super().parse_known_args(args, namespace)


def _parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; each declares its options in its own ``_declare_*``."""
    parser = argparse.ArgumentParser(
        prog="python -m runner",
        description="Run a multi-task transfer study described by a TOML manifest. "
                    "`python -m runner MANIFEST` is short for `python -m runner run MANIFEST`.",
        epilog="Exit codes: 0 all jobs done; 1 some jobs failed (the others went on); "
               "2 bad input; 3 time budget reached or interrupted (SIGTERM, Ctrl-C): "
               "run the same command again to resume.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Command)
    sub.add_parser("run", help="run every ready job (default command)", declare=_declare_run)
    sub.add_parser("plan", help="print the jobs and their states", declare=_declare_plan)
    sub.add_parser("status", help="counts per state, progress, failures",
                   declare=_declare_status)
    sub.add_parser("prepare", help="prepare the datasets (python -m runner prepare --help)",
                   declare=_declare_prepare)
    sub.add_parser("contamination", declare=_declare_contamination,
                   help="RQ1: which validation/test units overlap which task's training data "
                        "(python -m runner contamination --help)")
    sub.add_parser("evaluate", declare=_declare_evaluate,
                   help="RQ3: evaluate finished jobs' best weights at fp32/fp16/bf16/int8/nf4")
    sub.add_parser("similarity", declare=_declare_similarity,
                   help="RQ4: task similarity (label, word, word-piece Jaccard; unigram JSD)")
    sub.add_parser("selfcheck", declare=_declare_selfcheck,
                   help="check this machine first: tiny jobs of every strategy at the card's "
                        "precision, kill -9 and resume, --workers auto, tokens/s and MFU "
                        "(writes the --throughput file of plan --estimate)")
    return parser


def _study_arguments(p: argparse.ArgumentParser) -> None:
    """The manifest and its folders, for the commands that read a study."""
    p.add_argument("manifest", help="the study's TOML manifest, e.g. manifests/demo.toml")
    p.add_argument("--data-dir", default="data",
                   help="prepared data with its SHA256SUMS (default: data)")
    p.add_argument("--results-dir", default=None,
                   help="the study's results folder (default: [study] results in the "
                        "manifest, i.e. results/<study name>)")


def _declare_run(run: argparse.ArgumentParser) -> None:
    run.description = ("Run every job whose dependencies are done, in plan order; skip done "
                       "jobs, resume interrupted ones. Several workers (processes or machines "
                       "sharing the results folder) may run the same manifest at once: each "
                       "job runs once.")
    _study_arguments(run)
    run.set_defaults(handler=_study)
    run.add_argument("--time-budget", default=None, metavar="DURATION",
                     help="e.g. 11h30m, 45m, 90s: start no job that cannot finish in time, "
                          "checkpoint running jobs before the end, exit 3")
    run.add_argument("--retry-failed", action="store_true",
                     help="run failed jobs again (otherwise they stay failed)")
    run.add_argument("--worker-id", default=None,
                     help="name of this worker in the ledger (default: HOST-PID; with "
                          "--workers: the prefix of the workers' names)")
    run.add_argument("--workers", default=None, metavar="auto|N",
                     help="worker processes on this machine, all on the same ledger: 'auto' "
                          "= one per visible GPU (CUDA_VISIBLE_DEVICES set per worker; one "
                          "CPU worker without GPUs); N = N workers (GPUs shared round robin; "
                          "without GPUs the CPU cores are split between them). Worker logs: "
                          "<results>/ledger/workers/. Default: this process alone")
    run.add_argument("--allow-more-workers", action="store_true",
                     help="with --workers N: start N workers even where N is more than this "
                          "machine's usable CPU cores and visible GPUs (refused otherwise)")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local (default): this machine; ray: every ready job becomes a Ray "
                          "task asking for 1 GPU (0 on a cluster without GPUs) and "
                          "--cpus-per-job CPUs, as many at once as the cluster holds. Needs "
                          "the ray extra (pip install -e '.[ray]') and the results and data "
                          "folders on storage every node mounts at the same path; when a "
                          "node dies its claims expire after the lease (120 s) and the jobs "
                          "resume on another node from their last checkpoint")
    run.add_argument("--address", default=None,
                     help="with --executor ray: the cluster to join ('auto' = the one "
                          "started with `ray start` on this machine, or ray://HOST:10001); "
                          "default: start a local Ray instance")
    run.add_argument("--cpus-per-job", type=float, default=None, metavar="N",
                     help="with --executor ray: CPUs each job asks Ray for (default 1)")
    run.add_argument("--tracking", default=None, metavar="BACKEND,...|none",
                     help="experiment tracking, comma-separated: tensorboard, mlflow, wandb "
                          "(runs under <results>/tracking/); 'none' turns it off; overrides "
                          "[study] tracking in the manifest (default: the manifest's, none)")


def _declare_plan(plan: argparse.ArgumentParser) -> None:
    plan.description = ("Print every job (id, experiment, strategy, model, tasks, seed, "
                        "depends on, state), then counts per strategy and state and the "
                        "total. Writes nothing.")
    _study_arguments(plan)
    plan.set_defaults(handler=_study)
    plan.add_argument("--json", action="store_true",
                      help="print the jobs, their states and the design check as one JSON "
                           "document (for scripts)")
    plan.add_argument("--sd-points", type=float, default=None, metavar="SD",
                      help="seed-to-seed standard deviation of a paired difference, in points "
                           "of the primary metric, for the power of every comparison (default: "
                           "measured from finished jobs where 3+ seeds are done, else "
                           "runner.study.design.DEFAULT_SD_POINTS = 1.62, from the committed "
                           "seed-spread runs)")
    plan.add_argument("--estimate", action="store_true",
                      help="compute estimate instead of the job table: per job and in total "
                           "the real training tokens, FLOPs and hours on --gpu (an estimate: "
                           "it prints what it assumes)")
    plan.add_argument("--gpu", default="t4", choices=("t4", "p100", "a100", "h100", "cpu"),
                      help="with --estimate: the device (default t4, Kaggle's)")
    plan.add_argument("--throughput", default=None, metavar="FILE",
                      help="with --estimate: the output of benchmarks/train_throughput.py "
                           "(--out FILE, or its redirected stdout): a measured throughput "
                           "instead of the default")
    plan.add_argument("--quota-hours", type=float, default=30.0, metavar="H",
                      help="with --estimate: the weekly GPU quota to compare with (default "
                           "30, Kaggle's)")
    plan.add_argument("--devices-per-session", type=int, default=None, metavar="N",
                      help="with --estimate: devices a session runs jobs on at once, one job "
                           "each (the quota counts session time); default the --gpu's usual "
                           "session: t4 2 (Kaggle's 2xT4), others 1")


def _declare_status(status: argparse.ArgumentParser) -> None:
    status.description = ("Counts per state, progress and ETA of running jobs, failed jobs "
                          "with their one-line reason. Writes nothing.")
    _study_arguments(status)
    status.set_defaults(handler=_study)
    status.add_argument("--json", action="store_true",
                        help="the same as one JSON document (for scripts)")


def _declare_evaluate(ev: argparse.ArgumentParser) -> None:
    ev.description = (
        "For every finished job of the manifest (result.json present), rebuild the "
        "model with the best weights it kept and write <job_dir>/evaluation/<level>.json: the "
        "primary metric on the job's own test subset, ECE (15 bins) before/after temperature "
        "scaling fitted on its validation subset, latency per example and throughput at "
        "--batch-size (after a warm-up batch), peak memory, size on disk. fp16/bf16 need a "
        "CUDA GPU; nf4 needs bitsandbytes and a CUDA GPU or bitsandbytes' CPU backend; int8 (dynamic quantisation of nn.Linear) runs on "
        "CPU; a level that cannot run here is written as skipped with the reason. A level "
        "whose file exists is not computed again (--force does).")
    _study_arguments(ev)
    ev.set_defaults(handler=_evaluate)
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


def _declare_prepare(p: argparse.ArgumentParser) -> None:
    from runner.data import prepare  # lazily, as each module below: only its command needs it
    prepare.add_arguments(p)
    p.set_defaults(handler=prepare.run)


def _declare_contamination(p: argparse.ArgumentParser) -> None:
    from runner.data import contamination
    contamination.add_arguments(p)
    p.set_defaults(handler=functools.partial(contamination.run, manifest_tasks=_evaluated_tasks))


def _declare_similarity(p: argparse.ArgumentParser) -> None:
    from runner.recipes import similarity
    similarity.add_arguments(p)
    p.set_defaults(handler=similarity.run)


def _declare_selfcheck(p: argparse.ArgumentParser) -> None:
    p.description = (
        "The first command on a new machine (runner/recipes/selfcheck.py): random-weight "
        "MiniLM- and BERT-base-shaped encoders (no hub access), a tiny study of single-task, "
        "multi-task and token-controlled jobs run with --workers auto (one worker per visible "
        "GPU) at the card's precision, one run SIGKILLed after its first checkpoint and "
        "resumed to the uninterrupted result, and training tokens/s and MFU per model "
        "written to OUT/throughput.json for `plan --estimate --throughput`. Exit 0 every "
        "check passed, 1 one failed, 2 bad input. About 10 minutes on one T4; --device cpu "
        "runs the same checks in CPU mode in a minute or two.")
    p.set_defaults(handler=_selfcheck)
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


def _selfcheck(args: argparse.Namespace) -> int:
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""   # before torch is imported, and for children
    from runner.recipes import selfcheck

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    return selfcheck.run(args.out, args.data_dir, args.device, args.precision, models,
                         args.steps, args.job_model, args.keep_models)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:   # whoever read our stdout stopped reading (`| head`)
        _silence_stdout()
        return EXIT_FAILED


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


def _main(argv: list[str] | None = None) -> int:
    argv = _join_dash_values(list(sys.argv[1:] if argv is None else argv))
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "run")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    if args.command == "run":
        from runner.orchestrate.workers import die_with_parent
        die_with_parent()   # a worker started by --workers stops when its parent dies
    try:
        return args.handler(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_TIME_BUDGET


def _evaluated_tasks(manifest_path: str) -> list[str]:
    """The tasks ``contamination --manifest`` checks: the study's evaluated tasks."""
    from runner.study.manifest import load_manifest
    return list(load_manifest(manifest_path).evaluated_tasks())


def _evaluate(args: argparse.Namespace) -> int:
    from runner.recipes.quantized_eval import evaluate_manifest, parse_levels, parse_names

    summary = evaluate_manifest(args.manifest, results_dir=args.results_dir,
                                data_dir=args.data_dir, levels=parse_levels(args.levels),
                                batch_size=args.batch_size,
                                experiments=parse_names(args.experiments),
                                max_test_examples=args.max_test_examples, force=args.force)
    return EXIT_FAILED if summary.skipped_jobs else 0


def _after_run(manifest, results_dir, data_dir, code: int) -> int:
    """RQ4: a finished run of a manifest with a task_sets = "pairs" experiment writes the
    study's task_similarity.json when it is absent (a failure here never fails the run)."""
    from runner.recipes import similarity
    from runner.study.manifest import has_pair_experiment

    out = results_dir / "task_similarity.json"
    if code != 0 or out.exists() or not has_pair_experiment(manifest):
        return code
    if similarity.write_for_manifest(manifest, results_dir, data_dir) != 0:
        print(f"warning: {out} not written (python -m runner similarity --manifest ...)",
              file=sys.stderr)
    return code


def _results_dir(args: argparse.Namespace, manifest):
    """The results folder, checked before any work: one that cannot be a folder we write into
    (under a file, in /proc), an empty --results-dir, a link that leads nowhere (dangling,
    a loop) and the data folder itself (or a folder holding or inside it) are bad input,
    named where it was given: --results-dir or the manifest's `results` line."""
    from pathlib import Path

    from mtl_contract.files import folder_problem  # the one output-folder check (stats' too)

    if args.results_dir is not None and not args.results_dir.strip():
        raise InputError(None, "empty path (leave --results-dir out for the manifest's "
                         "[study] results)", where="--results-dir")
    path = Path(args.results_dir or manifest.study.results)
    problem = _path_problem(path) or folder_problem(path, write=args.command == "run") \
        or _data_overlap(path, Path(args.data_dir))
    if problem is None:
        return path
    if args.results_dir is not None:
        raise InputError(str(path), problem, where="--results-dir")
    raise InputError(manifest.path, f"{path}: {problem}", where="study.results",
                     line=manifest.study.results_line)


def _path_problem(path) -> str | None:
    """A results path that cannot be resolved: a symbolic link loop or a dangling link on
    the way (or at its end)."""
    import errno

    try:
        os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"a symbolic link to {os.readlink(path)}, which does not exist"
        return None   # created by `run`
    except NotADirectoryError:
        return None   # under a file: folder_problem names the file
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop (too many levels of symbolic links)"
        return f"cannot be read ({exc.strerror or exc})"
    return None


def _data_overlap(path, data_dir) -> str | None:
    """The results folder must not be the data folder, inside it, or around it: the runner
    writes job folders and its ledger there."""
    results, data = os.path.realpath(path), os.path.realpath(data_dir)
    if results == data:
        return f"is the data folder ({data_dir}); give the study its own results folder"
    if results.startswith(data + os.sep):
        return f"lies inside the data folder ({data_dir}); give the study its own folder"
    if data.startswith(results + os.sep):
        return f"holds the data folder ({data_dir}); give the study its own folder"
    return None


def _run_flags(args: argparse.Namespace) -> int | None:
    """Check run's executor flags before anything slow (data, models); return the --workers
    count (None: auto or not given)."""
    if args.executor == "ray":
        if args.workers is not None:
            raise InputError(None, "--workers is for --executor local; Ray places the jobs "
                             "itself", where="--workers")
        if args.cpus_per_job is not None and not args.cpus_per_job > 0:
            raise InputError(None, f"expected a positive number of CPUs, got "
                             f"{args.cpus_per_job}", where="--cpus-per-job")
        return None
    if args.address is not None or args.cpus_per_job is not None:
        raise InputError(None, "only with --executor ray", where="--address/--cpus-per-job")
    if args.workers is None:
        return None
    from runner.orchestrate import workers
    n = workers.parse_workers(args.workers)
    workers.check_workers(n, args.allow_more_workers)
    return n


def _models_left(plan, results_dir, retry_failed: bool) -> list[str]:
    """Model aliases of the jobs this run may still start: a finished study loads none."""
    from runner.orchestrate.ledger import Ledger
    from runner.orchestrate.local import job_states

    skip = {"done"} if retry_failed else {"done", "failed", "blocked"}
    states = job_states(plan.jobs, Ledger(results_dir).snapshot(j.job_id for j in plan.jobs))
    return [j.model for j in plan.jobs if states[j.job_id] not in skip]


def _plan(args: argparse.Namespace, plan, manifest, results_dir) -> int:
    """`runner plan`: the jobs and their states, whether each model resolves here, and the
    design check (runner/study/design.py); ``--json`` gives the same as one document."""
    from runner.orchestrate import local as executor
    from runner.orchestrate.ledger import Ledger
    from runner.study import design
    from runner.study.plan import models_report

    if args.estimate:
        return _estimate(args, plan)
    check = design.check(plan, results_dir, sd_points=args.sd_points)
    if args.json:
        states = executor.job_states(plan.jobs, Ledger(results_dir).snapshot(
            j.job_id for j in plan.jobs))
        jobs = [{"job_id": j.job_id, "experiment": j.experiment, "strategy": j.strategy,
                 "model": j.model, "tasks": list(j.tasks), "seed": j.seed,
                 "depends_on": list(j.depends_on), "state": states[j.job_id]}
                for j in plan.jobs]
        print(json.dumps({"study": manifest.study.name, "jobs": jobs,
                          "design": check.as_json()}, indent=1))
        return 0
    print(executor.plan_table(plan, results_dir))
    print(models_report(manifest, [j.model for j in plan.jobs]))
    print("\n".join(design.render(check)))
    return 0


def _estimate(args: argparse.Namespace, plan) -> int:
    """`runner plan --estimate`: tokens, FLOPs and device-hours (runner/observe/estimate.py)."""
    from runner.observe import estimate as est

    bench = None
    if args.throughput:
        try:
            bench = est.read_benchmark(args.throughput)
        except (OSError, ValueError) as exc:
            raise InputError(args.throughput, f"cannot read a throughput measurement: {exc}",
                             where="--throughput") from None
    if not args.quota_hours > 0:
        raise InputError(None, f"expected a positive number of hours, got {args.quota_hours}",
                         where="--quota-hours")
    try:
        sizes = est.job_sizes(plan)
    except FileNotFoundError as exc:
        raise InputError(str(plan.data_dir), str(exc), where="--data-dir") from None
    if args.devices_per_session is not None and args.devices_per_session < 1:
        raise InputError(None, f"expected a whole number of devices >= 1, got "
                         f"{args.devices_per_session}", where="--devices-per-session")
    e = est.estimate(sizes, args.gpu, bench, args.quota_hours,
                     devices_per_session=args.devices_per_session)
    if args.json:
        print(json.dumps(est.estimate_as_json(e), indent=1))
    else:
        print(est.render_estimate(e, max_rows=50 if len(plan.jobs) > 200 else None))
        text_ids = est.text_control_ids(plan)
        text = [j for j in e.jobs if j.job_id in text_ids]
        if text:
            print(f"of which {len(text)} text-matched control jobs: "
                  f"{sum(j.hours or 0.0 for j in text):.2f} device-hours -- each costs what "
                  f"its multi-task job costs (the same batches through the encoder; the "
                  f"masked-LM head's output layer on 15% of the other tasks' tokens is not "
                  f"counted)")
        left_out = len(plan.jobs) - len(sizes)
        if left_out:
            print(f"not estimated: {left_out} jobs whose tasks have no token counts in "
                  f"{plan.data_dir}/TOKEN_LENGTHS.json")
    return 0


def _design_summary(plan, results_dir) -> None:
    """Before `run` claims work: the design check's warnings and one line of counts (the
    whole check is `runner plan`'s; a resumed run should not repeat pages of it)."""
    from runner.study import design

    check = design.check(plan, results_dir)
    testable = sum(c.paired_test for c in check.comparisons)
    for warning in check.warnings:
        print(f"design check: WARNING: {warning}")
    print(f"design check: {len(check.comparisons)} comparisons, {testable} with a paired "
          f"test; details: python -m runner plan {plan.manifest.path}", flush=True)


def _tracking(args: argparse.Namespace) -> tuple[str, ...] | None:
    """--tracking (None: not given, the manifest's [study] tracking applies)."""
    if args.tracking is None:
        return None
    from runner.observe.tracking import parse_tracking_flag
    try:
        return tuple(parse_tracking_flag(args.tracking))
    except ValueError as exc:
        raise InputError(None, str(exc), where="--tracking") from None


def _worker_index() -> int:
    """The line of this worker's progress bar: its index among --workers' processes."""
    try:
        return max(0, int(os.environ.get("RUNNER_WORKER_INDEX", "0")))
    except ValueError:
        return 0


def _study(args: argparse.Namespace) -> int:
    """`run`, `plan` and `status`: the manifest, its results folder, run's flags and the plan
    (with the data's checksums) are checked in that order before anything else."""
    from runner.orchestrate import local as executor
    from runner.study.manifest import load_manifest
    from runner.study.plan import build_plan, check_models

    manifest = load_manifest(args.manifest)
    results_dir = _results_dir(args, manifest)
    budget = None
    if getattr(args, "time_budget", None) is not None:
        budget = executor.parse_time_budget(args.time_budget)
    n_workers = _run_flags(args) if args.command == "run" else None
    # the data folder and its SHA256SUMS are bad input here, before any job is claimed
    plan = build_plan(manifest, args.data_dir, require_data=True)
    if args.command == "plan":
        return _plan(args, plan, manifest, results_dir)
    if args.command == "status":
        print(executor.status(plan, results_dir, as_json=args.json))
        return 0
    tracking = _tracking(args)
    # every executor: a model that cannot be had stops the run now, not job by job
    from runner.ml.pretrained import load_config_and_tokenizer  # no torch: transformers lazily
    check_models(manifest, _models_left(plan, results_dir, args.retry_failed),
                 load_config_and_tokenizer)
    _design_summary(plan, results_dir)
    if args.executor == "ray":
        from runner.orchestrate.ray import run_ray
        code = run_ray(plan, results_dir, address=args.address, time_budget_s=budget,
                       retry_failed=args.retry_failed, cpus_per_job=args.cpus_per_job,
                       tracking=tracking)
        return _after_run(manifest, results_dir, args.data_dir, code)
    if args.workers is not None:
        from runner.orchestrate import workers
        if (n_workers if n_workers is not None else len(workers.visible_gpus())) > 1:
            child = [str(args.manifest), "--results-dir", str(results_dir),
                     "--data-dir", str(args.data_dir)]
            if args.tracking is not None:
                child += ["--tracking", args.tracking]
            code = workers.run_workers(plan, results_dir, child, workers=n_workers,
                                       time_budget_s=budget, retry_failed=args.retry_failed,
                                       worker_prefix=args.worker_id)
            return _after_run(manifest, results_dir, args.data_dir, code)
    code = executor.run_plan(plan, results_dir, time_budget_s=budget,
                             retry_failed=args.retry_failed, worker_id=args.worker_id,
                             tracking=tracking, bar_position=_worker_index())
    return _after_run(manifest, results_dir, args.data_dir, code)


if __name__ == "__main__":
    sys.exit(main())
