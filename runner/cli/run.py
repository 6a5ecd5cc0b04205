"""`run` (the default command): the study's checks, then its jobs through one executor
(this process, ``--workers``' processes, or Ray), then the after-run step.

The flow, in order:

1. the manifest, its results folder, ``--time-budget`` and the executor's flags, then the
   plan with the data's checksums (bad input stops here: exit 2, nothing written);
2. the models and the training engine of the jobs left to run (none for a finished study);
3. the design check's warnings and one line of counts;
4. the jobs, each run by the job function handed to the executor: the training engine
   (``training_job``; tests hand the executors stand-ins instead);
5. the after-run step, RQ4 task similarity (runner/cli/similarity.py ``similarity_step``):
   a run that finished every job of a study with a ``task_sets = "pairs"`` experiment
   writes ``<results>/task_similarity.json`` when it is absent; it never fails the run.
"""

from __future__ import annotations

import argparse
import os

from runner.cli.similarity import similarity_step
from runner.cli.study import open_study, study_arguments, study_plan
from runner.errors import InputError


def declare_run(run: argparse.ArgumentParser) -> None:
    run.description = ("Run every job whose dependencies are done, in plan order; skip done "
                       "jobs, resume interrupted ones. Several workers (processes or machines "
                       "sharing the results folder) may run the same manifest at once: each "
                       "job runs once. After the jobs, one step: RQ4 task similarity -- a "
                       "run that finished every job of a study with a task_sets = \"pairs\" "
                       "experiment writes <results>/task_similarity.json when it is absent "
                       "(as `python -m runner similarity --manifest MANIFEST` does; a failure "
                       "there is a warning, never the run's).")
    study_arguments(run)
    run.set_defaults(handler=run_command)
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


def training_job(job, ctx) -> dict:
    """The job function `run` hands its executor: the training engine
    (runner/recipes/train_job.py), imported at the first job, so that a run with nothing
    left to do never imports torch.  A module-level function: Ray ships it to its nodes by
    name."""
    from runner.recipes.train_job import run_job

    return run_job(job, ctx)


def check_engine() -> None:
    """A missing third-party library of the training engine is a broken install (bad input,
    before any job is claimed); a missing project module is a bug and fails loudly."""
    from runner.study.models import missing_libraries

    missing = missing_libraries(("torch", "transformers"))
    if missing:
        raise InputError(None, f"cannot import the training engine: {', '.join(missing)} "
                         f"missing; install the project (pip install -e .)",
                         where="runner.recipes")


def run_command(args: argparse.Namespace) -> int:
    from runner.orchestrate.local import parse_time_budget
    from runner.orchestrate.workers import die_with_parent
    from runner.study.plan import check_models

    die_with_parent()   # a worker started by --workers stops when its parent dies
    manifest, results_dir = open_study(args, write=True)
    budget = None if args.time_budget is None else parse_time_budget(args.time_budget)
    n_workers = _run_flags(args)
    plan = study_plan(manifest, args.data_dir)
    tracking = _tracking(args)
    # every executor: a model or an engine that cannot be had stops the run now, not job by job
    models = _models_left(plan, results_dir, args.retry_failed)
    from runner.ml.pretrained import load_config_and_tokenizer  # no torch: transformers lazily
    check_models(manifest, models, load_config_and_tokenizer)
    if models:
        check_engine()
    _design_summary(plan, results_dir)
    code = _run_jobs(args, plan, results_dir, budget, n_workers, tracking)
    return similarity_step(manifest, results_dir, args.data_dir, code)


def _run_jobs(args: argparse.Namespace, plan, results_dir, budget: float | None,
              n_workers: int | None, tracking: tuple[str, ...] | None) -> int:
    """The jobs, through the executor the flags name; the executor's exit code."""
    if args.executor == "ray":
        from runner.orchestrate.ray import run_ray
        return run_ray(plan, results_dir, job_fn=training_job, address=args.address,
                       time_budget_s=budget, retry_failed=args.retry_failed,
                       cpus_per_job=args.cpus_per_job, tracking=tracking)
    if args.workers is not None:
        from runner.orchestrate import workers
        if (n_workers if n_workers is not None else len(workers.visible_gpus())) > 1:
            child = [str(args.manifest), "--results-dir", str(results_dir),
                     "--data-dir", str(args.data_dir)]
            if args.tracking is not None:
                child += ["--tracking", args.tracking]
            return workers.run_workers(plan, results_dir, child, workers=n_workers,
                                       time_budget_s=budget, retry_failed=args.retry_failed,
                                       worker_prefix=args.worker_id)
    from runner.orchestrate.local import run_plan
    return run_plan(plan, results_dir, job_fn=training_job, time_budget_s=budget,
                    retry_failed=args.retry_failed, worker_id=args.worker_id,
                    tracking=tracking, bar_position=_worker_index())


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
    from runner.orchestrate.states import job_states

    skip = {"done"} if retry_failed else {"done", "failed", "blocked"}
    states = job_states(plan.jobs, Ledger(results_dir).snapshot(j.job_id for j in plan.jobs))
    return [j.model for j in plan.jobs if states[j.job_id] not in skip]


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
