"""``python -m runner``: run, plan or check a study described by a manifest.

    python -m runner MANIFEST [--results-dir DIR] [--data-dir data] [--time-budget 11h30m]
                              [--retry-failed] [--worker-id ID]       (same as `run`)
                              [--workers auto|N]                 (one process per GPU)
                              [--executor ray [--address ADDR] [--cpus-per-job N]]
    python -m runner plan MANIFEST [--data-dir data] [--results-dir DIR]
    python -m runner status MANIFEST [--data-dir data] [--results-dir DIR]
    python -m runner prepare ...                                      (prepare the data)

Exit codes: 0 all done, 1 some job failed (the others went on), 2 bad input (one line on
stderr, nothing written), 3 time budget reached or interrupted: run the same command again.
"""

from __future__ import annotations

import argparse
import sys

from runner.errors import EXIT_BAD_INPUT, EXIT_TIME_BUDGET, InputError

COMMANDS = ("run", "plan", "status", "prepare")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runner",
        description="Run a multi-task transfer study described by a TOML manifest. "
                    "`python -m runner MANIFEST` is short for `python -m runner run MANIFEST`.",
        epilog="Exit codes: 0 all jobs done; 1 some jobs failed (the others went on); "
               "2 bad input; 3 time budget reached or interrupted (SIGTERM, Ctrl-C): "
               "run the same command again to resume.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("manifest", help="the study's TOML manifest, e.g. manifests/demo.toml")
        p.add_argument("--data-dir", default="data",
                       help="prepared data with its SHA256SUMS (default: data)")
        p.add_argument("--results-dir", default=None,
                       help="the study's results folder (default: [study] results in the "
                            "manifest, i.e. results/<study name>)")

    run = sub.add_parser("run", help="run every ready job (default command)",
                         description="Run every job whose dependencies are done, in plan "
                         "order; skip done jobs, resume interrupted ones. Several workers "
                         "(processes or machines sharing the results folder) may run the "
                         "same manifest at once: each job runs once.")
    common(run)
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
    plan = sub.add_parser("plan", help="print the jobs and their states",
                          description="Print every job (id, experiment, strategy, model, "
                          "tasks, seed, depends on, state), then counts per strategy and "
                          "state and the total. Writes nothing.")
    common(plan)
    status = sub.add_parser("status", help="counts per state, progress, failures",
                            description="Counts per state, progress and ETA of running "
                            "jobs, failed jobs with their one-line reason. Writes nothing.")
    common(status)
    sub.add_parser("prepare", help="prepare the datasets (python -m runner prepare --help)",
                   add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "prepare":
        from runner.prepare import main as prepare_main  # lazily: only this command needs it
        return prepare_main(argv[1:])
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "run")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    if args.command == "run":
        from runner.workers import die_with_parent
        die_with_parent()   # a worker started by --workers stops when its parent dies
    try:
        return _dispatch(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_TIME_BUDGET


def _dispatch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from runner import executor
    from runner.manifest import load_manifest
    from runner.plan import build_plan

    manifest = load_manifest(args.manifest)
    results_dir = Path(args.results_dir or manifest.study.results)
    if results_dir.exists() and not results_dir.is_dir():
        raise InputError(str(results_dir), "expected a results folder, found a file",
                         where="--results-dir")
    budget = None
    if getattr(args, "time_budget", None) is not None:
        budget = executor.parse_time_budget(args.time_budget)
    plan = build_plan(manifest, args.data_dir)
    if args.command == "plan":
        print(executor.plan_table(plan, results_dir))
        return 0
    if args.command == "status":
        print(executor.status(plan, results_dir))
        return 0
    if args.executor == "ray":
        if args.workers is not None:
            raise InputError(None, "--workers is for --executor local; Ray places the jobs "
                             "itself", where="--workers")
        from runner.ray_executor import run_ray
        return run_ray(plan, results_dir, address=args.address, time_budget_s=budget,
                       retry_failed=args.retry_failed, cpus_per_job=args.cpus_per_job)
    if args.address is not None or args.cpus_per_job is not None:
        raise InputError(None, "only with --executor ray", where="--address/--cpus-per-job")
    if args.workers is not None:
        from runner import workers
        n = workers.parse_workers(args.workers)
        if (n if n is not None else len(workers.visible_gpus())) > 1:
            child = [str(args.manifest), "--results-dir", str(results_dir),
                     "--data-dir", str(args.data_dir)]
            return workers.run_workers(plan, results_dir, child, workers=n,
                                       time_budget_s=budget, retry_failed=args.retry_failed,
                                       worker_prefix=args.worker_id)
    return executor.run_plan(plan, results_dir, time_budget_s=budget,
                             retry_failed=args.retry_failed, worker_id=args.worker_id)


if __name__ == "__main__":
    sys.exit(main())
