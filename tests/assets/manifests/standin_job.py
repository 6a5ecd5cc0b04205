"""A stand-in job function for the runner's tests: sleeps in steps, checkpoints, resumes,
and returns a result that depends only on the job (so reruns give identical results).

Side file (STANDIN_LOG, appended with O_APPEND): "start <job_id> <step>" and "gpu <job_id>
<its CUDA_VISIBLE_DEVICES>" when a run of the job begins and "finish <job_id>" when it returns
its result -- the tests count these.

Run as a script it is a worker: ``python standin_job.py MANIFEST RESULTS DATA [options]``.
Environment: STANDIN_STEPS (5), STANDIN_SLEEP_S (seconds per step, 0.05),
STANDIN_FAIL (comma-separated task names whose jobs fail), STANDIN_LOG.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

from mtl_contract.files import atomic_write_json
from runner.jobapi import JobFailed, JobInterrupted


def _append(line: str) -> None:
    path = os.environ.get("STANDIN_LOG")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _tokens(job_id: str, task: str) -> int:
    return 1000 + int(hashlib.sha256(f"{job_id}/{task}".encode()).hexdigest()[:6], 16) % 9000


def standin_job(job, ctx) -> dict:
    steps = int(os.environ.get("STANDIN_STEPS", "5"))
    sleep_s = float(os.environ.get("STANDIN_SLEEP_S", "0.05"))
    fail = {t for t in os.environ.get("STANDIN_FAIL", "").split(",") if t}
    ckpt = ctx.job_dir / "checkpoint.json"
    step = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
    _append(f"start {job.job_id} {step}")
    _append(f"gpu {job.job_id} {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}")
    if fail & set(job.tasks):
        raise JobFailed(f"injected failure for {'+'.join(job.tasks)}\nsecond line")
    target = None
    if job.strategy == "token_controlled":
        ref = ctx.dependency_results[job.depends_on[0]]
        target = ref["token_count"] if job.parity == "total" else \
            ref["tokens_per_task"][job.tasks[0]]
    while step < steps:
        if ctx.should_stop():
            atomic_write_json(ckpt, {"step": step})
            raise JobInterrupted(f"stopped at step {step}")
        time.sleep(sleep_s)
        step += 1
        atomic_write_json(ckpt, {"step": step})
        ctx.heartbeat({"step": step, "total_steps": steps, "tokens": step * 100})
    per_task = {t: (target if target is not None else _tokens(job.job_id, t))
                for t in job.tasks}
    _append(f"finish {job.job_id}")
    return {"experiment_id": job.job_id, "experiment": job.experiment,
            "experiment_type": job.experiment_type, "tasks": list(job.tasks),
            "seed": job.seed, "token_count": sum(per_task.values()),
            "tokens_per_task": per_task, "target_tokens": target, "steps": step}


def main(argv: list[str]) -> int:
    import argparse

    from runner.orchestrate.local import parse_time_budget, run_plan
    from runner.study.manifest import load_manifest
    from runner.study.plan import build_plan

    p = argparse.ArgumentParser()
    p.add_argument("manifest")
    p.add_argument("results")
    p.add_argument("data")
    p.add_argument("--time-budget")
    p.add_argument("--retry-failed", action="store_true")
    p.add_argument("--worker-id")
    p.add_argument("--lease-s", type=float, default=120.0)
    args = p.parse_args(argv)
    plan = build_plan(load_manifest(args.manifest), args.data)
    budget = parse_time_budget(args.time_budget) if args.time_budget else None
    return run_plan(plan, args.results, job_fn=standin_job, time_budget_s=budget,
                    retry_failed=args.retry_failed, worker_id=args.worker_id,
                    lease_s=args.lease_s, heartbeat_s=0.2, poll_s=0.1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
