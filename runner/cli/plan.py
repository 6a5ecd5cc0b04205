"""`plan` (the jobs, their states, the models, the design check; or ``--estimate``) and
`status` (counts per state, running jobs, failures, the study's ETA).  Neither writes
anything, and neither imports torch, transformers, pandas or numpy: `plan` is meant to take
under a second on a 10,000-job study (benchmarks/plan_and_status.py)."""

from __future__ import annotations

import argparse
import json

from runner.cli.study import open_study, study_arguments, study_plan
from runner.errors import InputError


def declare_plan(plan: argparse.ArgumentParser) -> None:
    plan.description = ("Print every job (id, experiment, strategy, model, tasks, seed, "
                        "depends on, state), then counts per strategy and state and the "
                        "total. Writes nothing.")
    study_arguments(plan)
    plan.set_defaults(handler=plan_command)
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


def declare_status(status: argparse.ArgumentParser) -> None:
    status.description = ("Counts per state, progress and ETA of running jobs, failed jobs "
                          "with their one-line reason. Writes nothing.")
    study_arguments(status)
    status.set_defaults(handler=status_command)
    status.add_argument("--json", action="store_true",
                        help="the same as one JSON document (for scripts)")


def status_command(args: argparse.Namespace) -> int:
    from runner.orchestrate.report import status

    manifest, results_dir = open_study(args, write=False)
    plan = study_plan(manifest, args.data_dir)
    print(status(plan, results_dir, as_json=args.json))
    return 0


def plan_command(args: argparse.Namespace) -> int:
    """`runner plan`: the jobs and their states, whether each model resolves here, and the
    design check (runner/study/design.py); ``--json`` gives the same as one document."""
    from runner.orchestrate.ledger import Ledger
    from runner.orchestrate.report import plan_table
    from runner.orchestrate.states import job_states
    from runner.study import design
    from runner.study.plan import models_report

    manifest, results_dir = open_study(args, write=False)
    plan = study_plan(manifest, args.data_dir)
    if args.estimate:
        return _estimate(args, plan)
    check = design.check(plan, results_dir, sd_points=args.sd_points)
    if args.json:
        states = job_states(plan.jobs, Ledger(results_dir).snapshot(
            j.job_id for j in plan.jobs))
        jobs = [{"job_id": j.job_id, "experiment": j.experiment, "strategy": j.strategy,
                 "model": j.model, "tasks": list(j.tasks), "seed": j.seed,
                 "depends_on": list(j.depends_on), "state": states[j.job_id]}
                for j in plan.jobs]
        print(json.dumps({"study": manifest.study.name, "jobs": jobs,
                          "design": check.as_json()}, indent=1))
        return 0
    print(plan_table(plan, results_dir))
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
