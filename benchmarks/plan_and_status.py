"""Plan and status of a ~10,000-job study: goal under 1 second each, the command included.

    python benchmarks/plan_and_status.py [--seeds 93] [--repeat 3] [--before DIR]
                                         [--commands-only]

Builds a manifest of 4 models x (8 single-task + 4 multi-task + 15 token-controlled) jobs
per seed (93 seeds = 10,044 jobs) and a results folder in a temporary directory where 60%
of the jobs are done (a 2 KB result.json and a duration record each), 2% failed, 1% interrupted and 4 running
(claim + heartbeat).  Then, in this process, the best of --repeat runs of

    plan            load_manifest + build_plan (parse, expand, hash every job)
    plan table      the `python -m runner plan` text (includes a ledger snapshot)
    design check    runner/study/design.py over the plan and the results (power per comparison,
                    token-controlled feasibility from data/TOKEN_LENGTHS.json, truncation);
                    here every finished job has a primary score, so the measured seed-to-seed
                    SD reads ~6,000 result.json files
    status          the `python -m runner status` text (snapshot + states + report)
    baseline        naive status: per job, stat result.json and open its claim and failure
                    files (json.load), i.e. a few syscalls per job instead of a few scans
    baseline+parse  the same, also json.load of every result.json

and the two real commands as a user runs them (`python -m runner plan|status`, a new
interpreter each, start-up and imports included): `plan` on the fresh study (no results
yet) and on the populated one, `status` on the populated one.  Each command is timed as
wall seconds and as CPU seconds (user + system, of the child process: on a machine that is
busy with other work, the CPU seconds move less than the wall), against two named
baselines measured in the same process, interleaved with it:

    start-up        `python -c pass` in the same environment: the floor of any command
    --before DIR    the same command from another checkout (e.g. the main branch before a
                    change: PYTHONPATH=DIR, run in DIR), so before/after is one ratio

Every line prints seconds and ratios; --commands-only skips the in-process rows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl_contract.files import atomic_write_json
from runner.orchestrate.ledger import Ledger, Worker
from runner.orchestrate.report import format_plan, status
from runner.orchestrate.states import job_states
from runner.study import design
from runner.study.manifest import load_manifest
from runner.study.plan import build_plan

TASKS = ["bc2gm", "jnlpba", "chemprot", "ddi", "gad", "hoc", "pubmedqa", "biosses"]
GOAL_S = 1.0


def manifest_text(seeds: int) -> str:
    models = '["bert-base-uncased", "biobert", "scibert", "pubmedbert"]'
    return f"""
[study]
name = "bench"
seeds = {list(range(seeds))}

[[experiments]]
name = "single_task"
strategy = "single_task"
models = {models}
tasks = {json.dumps(TASKS)}

[[experiments]]
name = "multi_task"
strategy = "multi_task"
models = {models}
task_sets = [["bc2gm", "jnlpba"], ["chemprot", "ddi"], ["bc2gm", "chemprot", "gad"],
             {json.dumps(TASKS)}]

[[experiments]]
name = "token_controlled"
strategy = "token_controlled"
reference = "multi_task"
"""


def populate(plan, results: Path) -> None:
    ledger = Ledger(results)
    ledger.ensure()
    filler = "x" * 2000  # a result.json of about 2 KB
    n = len(plan.jobs)
    for i, job in enumerate(plan.jobs):
        if i % 100 < 60:
            score = {t: {"primary_metric": "f1", "metrics": {"f1": 0.5 + i % 7 / 100}}
                     for t in job.tasks}
            atomic_write_json(ledger.result_path(job.job_id),
                              {"experiment_id": job.job_id, "per_task": score, "pad": filler},
                              indent=None)
            # as the executor records it: status reads these for the study's ETA
            ledger.record_duration(job.job_id, job.experiment, 600.0 + i % 13)
        elif i % 100 < 62:
            ledger.record_failure(job.job_id, "RuntimeError: CUDA out of memory", "w")
        elif i % 100 < 63:
            ledger.job_dir(job.job_id).mkdir(exist_ok=True)
    for job in plan.jobs[n - 4:]:
        claim = ledger.try_claim(job.job_id, Worker("bench"), None)
        ledger.heartbeat(claim, {"step": 10, "total_steps": 100, "tokens": 5000,
                                 "elapsed_s": 30.0})


def naive_status(plan, results: Path, parse_results: bool) -> dict[str, str]:
    """Per job: stat its result, open its failure record and claim (plain string paths)."""
    out = {}
    root = os.fspath(results)
    for job in plan.jobs:
        result = f"{root}/{job.job_id}/result.json"
        if os.path.exists(result):
            if parse_results:
                with open(result) as fh:
                    json.load(fh)
            out[job.job_id] = "done"
            continue
        try:
            with open(f"{root}/ledger/failed/{job.job_id}.json") as fh:
                json.load(fh)
            out[job.job_id] = "failed"
            continue
        except FileNotFoundError:
            pass
        try:
            with open(f"{root}/ledger/claims/{job.job_id}.0.claim") as fh:
                json.load(fh)
            out[job.job_id] = "running"
        except FileNotFoundError:
            out[job.job_id] = "ready"
    return out


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def command(args: list[str], tree: Path | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of ``python ARGS`` run in ``tree`` with
    PYTHONPATH=tree (default: this checkout)."""
    tree = ROOT if tree is None else tree
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def best_commands(runs: dict[str, tuple[list[str], Path | None]], repeat: int
                  ) -> dict[str, tuple[float, float]]:
    """The best wall and the best CPU seconds of each command, the commands interleaved
    (one round runs each once) so that a change in the machine's load hits them alike."""
    walls: dict[str, list[float]] = {k: [] for k in runs}
    cpus: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeat):
        for name, (args, tree) in runs.items():
            wall, cpu = command(args, tree)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {k: (min(walls[k]), min(cpus[k])) for k in runs}


def in_process(plan, mpath: Path, data: Path, results: Path, repeat: int) -> list[tuple]:
    """The in-process rows: (name, seconds, baseline seconds or None)."""
    t_plan = best(lambda: build_plan(load_manifest(mpath), data), repeat)
    t_table = best(lambda: format_plan(plan, job_states(
        plan.jobs, Ledger(results).snapshot(j.job_id for j in plan.jobs))), repeat)
    t_design = best(lambda: design.check(plan, results), repeat)
    t_status = best(lambda: status(plan, results), repeat)
    t_naive = best(lambda: naive_status(plan, results, False), repeat)
    t_naive_parse = best(lambda: naive_status(plan, results, True), repeat)
    return [
        ("plan (parse + expand + hash)", t_plan, None),
        ("plan table (incl. snapshot)", t_table, None),
        ("design check", t_design, None),
        ("status", t_status, t_naive),
        ("baseline: naive per-job status", t_naive, None),
        ("baseline: naive + parse results", t_naive_parse, None),
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=93)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--before", type=Path, default=None, metavar="DIR",
                   help="another checkout whose commands are timed beside this one's")
    p.add_argument("--commands-only", action="store_true",
                   help="only the commands (start-up, plan, status), not the in-process rows")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mpath = tmp / "bench.toml"
        mpath.write_text(manifest_text(args.seeds))
        data = tmp / "data"
        data.mkdir()
        for name in ("SHA256SUMS", "TOKEN_LENGTHS.json"):
            (data / name).write_bytes((ROOT / "data" / name).read_bytes())
        results = tmp / "results"
        plan = build_plan(load_manifest(mpath), data)
        n = len(plan.jobs)
        populate(plan, results)
        snap = Ledger(results).snapshot(j.job_id for j in plan.jobs)
        states = job_states(plan.jobs, snap)
        naive = naive_status(plan, results, False)
        assert sum(s == "done" for s in states.values()) == sum(
            s == "done" for s in naive.values())
        rows = [] if args.commands_only else in_process(plan, mpath, data, results, args.repeat)

        def runner(cmd: str, folder: Path) -> list[str]:
            return ["-m", "runner", cmd, str(mpath), "--data-dir", str(data),
                    "--results-dir", str(folder)]
        trees = {"": None} if args.before is None else {"": None, " [before]": args.before}
        runs = {"start-up (python -c pass)": (["-c", "pass"], None)}
        for label, tree in trees.items():
            runs[f"plan, fresh study{label}"] = (runner("plan", tmp / "fresh"), tree)
            runs[f"plan, 60% done{label}"] = (runner("plan", results), tree)
            runs[f"status, 60% done{label}"] = (runner("status", results), tree)
        timed = best_commands(runs, args.repeat)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{n} jobs (60% done, 2% failed, 1% interrupted, 4 running); best of {args.repeat}; "
          f"cpu: {os.cpu_count()} cores visible; load average {load} (a busy machine "
          f"stretches the wall seconds: compare ratios)")
    for name, secs, base in rows:
        goal = "ok" if secs < GOAL_S else "OVER"
        ratio = f"  {base / secs:5.1f}x faster than the naive baseline" if base else ""
        print(f"  {name:34s} {secs:7.3f} s  (goal < {GOAL_S:.0f} s: {goal}){ratio}")
    if rows:
        print(f"  status vs baseline+parse: {rows[5][1] / rows[3][1]:.1f}x its speed")
    _, start_cpu = timed["start-up (python -c pass)"]
    print("commands (a new interpreter each):")
    for name, (wall, cpu) in timed.items():
        goal = "ok" if wall < GOAL_S else "OVER"
        print(f"  {name:34s} wall {wall:6.3f} s (goal < {GOAL_S:.0f} s: {goal}), "
              f"cpu {cpu:6.3f} s = {cpu / start_cpu:4.1f}x start-up")
    if args.before is not None:
        print(f"after / before ({ROOT} / {args.before}):")
        for name in ("plan, fresh study", "plan, 60% done", "status, 60% done"):
            (wall, cpu), (bwall, bcpu) = timed[name], timed[f"{name} [before]"]
            print(f"  {name:34s} wall {wall / bwall:5.2f}x, cpu {cpu / bcpu:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
