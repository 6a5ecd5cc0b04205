"""The compute estimate against a measured run: ``plan --estimate --gpu cpu`` of a
small study (default manifests/demo.toml, 10 jobs: single-task, multi-task and
token-controlled, MiniLM) next to the CPU time the study actually took, run here, in this
process.

Two measurements, back to back, in one process, both in CPU-seconds of this process with
``--threads`` torch threads (a shared machine inflates wall time, much less CPU time):

1. the baseline: the engine's training throughput on MiniLM (``benchmarks/train_throughput.py``'s
   ``run_engine``, BC2GM, the demo's batch and length), as model FLOPs per CPU-second,
   written as a throughput file (``--throughput-out``) that ``runner plan --estimate
   --gpu cpu --throughput FILE`` reads -- the estimate is then fed by a measured throughput,
   not by the built-in default;
2. the study: every job of the manifest run by the executor (``run_plan``, the real job
   function) into a fresh results folder.

The baseline is measured again after the study and the estimate uses the mean of the two
(a shared machine's load drifts: CPU-seconds inflate under contention too); both figures and
their drift are printed, so a run whose load changed under it shows it.

Printed: the estimate (with the measured throughput) and the measured CPU-seconds per job
group and in total, their ratio, and whether it is within ``--tolerance`` (15 %).  The
per-job start-up is the estimate's own (``runner.observe.estimate.DEVICES["cpu"]``, a
measured model load), not fitted to this run.  A GPU's file comes from ``benchmarks/train_throughput.py --device cuda
--out FILE`` and feeds ``--gpu t4 --throughput FILE`` the same way.

    nice python benchmarks/estimate_vs_measured.py [--manifest manifests/demo.toml]
        [--threads 1] [--out estimate_vs_measured.json] [--throughput-out cpu_tp.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402

import train_throughput as tt  # noqa: E402

from mtl_contract.files import atomic_write_json  # noqa: E402
from runner.data import token_lengths  # noqa: E402
from runner.observe import estimate as est  # noqa: E402
from runner.orchestrate.local import run_plan  # noqa: E402
from runner.study.manifest import load_manifest  # noqa: E402
from runner.study.plan import build_plan  # noqa: E402


def measure_throughput(steps: int, batch: int, max_length: int) -> dict:
    """The engine on MiniLM (BC2GM), model FLOPs per CPU-second over its steady steps, as a
    benchmarks/train_throughput.py-shaped document (its ``engine`` row)."""
    cfg = {"learning_rate": 3e-4, "warmup_steps": 10, "weight_decay": 0.01,
           "max_length": max_length, "batch_size": batch, "grad_accumulation": 1,
           "max_epochs": 100, "eval_every": 10 ** 9, "patience": 3, "min_delta": 1e-4,
           "max_train_examples": {"bc2gm": steps * batch}, "max_eval_examples": 16,
           "checkpoint_every_s": 10 ** 9, "precision": "fp32", "max_steps": steps,
           "compile": False}
    with tempfile.TemporaryDirectory(prefix="est_tp_") as work:
        result, clock = tt.run_engine(tt.resolve_model("minilm"), cfg, 0, REPO / "data",
                                      Path(work), torch.device("cpu"))
    steady = clock.marks[2:]   # the first steps warm the allocator up
    (_, k0, c0), (_, k1, c1) = steady[0], steady[-1]
    tokens_per_cpu_s = (k1 - k0) / (c1 - c0)
    examples = result["dataset_stats"]["bc2gm"]["train_samples"]
    seq = result["token_count"] / max(1, examples * result["train_results"]["epochs_trained"])
    shape = est.model_shape("minilm")
    flops = est.train_flops_per_token(shape, seq) * tokens_per_cpu_s
    # processed over real tokens of these batches, as the estimate counts a job's
    padding = est.Padding(token_lengths.read(REPO / "data")).ratio("bc2gm", max_length,
                                                                  steps * batch, batch)
    return {"device": f"CPU ({torch.get_num_threads()} threads, per CPU-second)",
            "source": "benchmarks/estimate_vs_measured.py",
            "models": {"minilm": {"best": {"engine": {
                "model_flops_per_s": flops, "tokens_per_s": tokens_per_cpu_s,
                "flops_per_token": est.train_flops_per_token(shape, seq),
                "mean_tokens_per_example": seq, "steps": steps, "padding": padding}}}}}


def bracketed(before: dict, after: dict) -> dict:
    """One throughput document from the measurements before and after the study: the mean
    of their tokens and model FLOPs per CPU-second (same model, batch and length)."""
    a = before["models"]["minilm"]["best"]["engine"]
    b = after["models"]["minilm"]["best"]["engine"]
    row = {**a, "tokens_per_s": (a["tokens_per_s"] + b["tokens_per_s"]) / 2,  # same padding
           "model_flops_per_s": (a["model_flops_per_s"] + b["model_flops_per_s"]) / 2,
           "steps": a["steps"] + b["steps"],
           "bracket_tokens_per_s": [a["tokens_per_s"], b["tokens_per_s"]]}
    return {**before, "models": {"minilm": {"best": {"engine": row}}}}


def run_study(manifest: Path, results: Path) -> tuple[object, dict[str, float], float]:
    """(plan, CPU-seconds per job, CPU-seconds in all) of the manifest run here."""
    plan = build_plan(load_manifest(manifest), REPO / "data")
    per_job: dict[str, float] = {}
    from runner.recipes import train_job

    def timed(job, ctx):
        c0 = time.process_time()
        try:
            return train_job.run_job(job, ctx)
        finally:
            per_job[job.job_id] = time.process_time() - c0
    c0 = time.process_time()
    rc = run_plan(plan, results, job_fn=timed, out=lambda msg: None, poll_s=0.05)
    total = time.process_time() - c0
    if rc != 0:
        raise SystemExit(f"the study run exited {rc}: see {results}")
    return plan, per_job, total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, default=REPO / "manifests/demo.toml")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--throughput-steps", type=int, default=40)
    ap.add_argument("--tolerance", type=float, default=0.15)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--throughput-out", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=None,
                    help="results folder of the study run (default: a temporary one)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    manifest = load_manifest(args.manifest)
    defaults = manifest.defaults
    c0, w0 = time.process_time(), time.perf_counter()
    bench = measure_throughput(args.throughput_steps, int(defaults.get("batch_size", 16)),
                               int(defaults.get("max_length", 128)))
    startup = est.DEVICES["cpu"].startup_s   # the estimate's own (a measured model load)
    print(f"baseline: {bench['models']['minilm']['best']['engine']['tokens_per_s']:.0f} "
          f"MiniLM training tokens per CPU-second ({torch.get_num_threads()} threads), "
          f"start-up {startup:g} s a job (the estimate's) ({time.process_time() - c0:.0f} CPU-s, "
          f"{time.perf_counter() - w0:.0f} s wall)", flush=True)
    with tempfile.TemporaryDirectory(prefix="est_study_") as tmp:
        results = args.results or Path(tmp) / "results"
        w1 = time.perf_counter()
        plan, per_job, total = run_study(args.manifest, results)
        wall = time.perf_counter() - w1
    after = measure_throughput(args.throughput_steps, int(defaults.get("batch_size", 16)),
                               int(defaults.get("max_length", 128)))
    before_tp = bench["models"]["minilm"]["best"]["engine"]["tokens_per_s"]
    after_tp = after["models"]["minilm"]["best"]["engine"]["tokens_per_s"]
    bench = bracketed(bench, after)
    print(f"baseline after the study: {after_tp:.0f} tokens per CPU-second (before: "
          f"{before_tp:.0f}, drift {after_tp / before_tp - 1:+.1%}); the estimate uses their "
          f"mean", flush=True)
    if args.throughput_out:
        atomic_write_json(args.throughput_out, bench)
    sizes = est.job_sizes(plan)
    e = est.estimate(sizes, "cpu", bench, startup_s=startup)
    by_id = {j.job_id: j for j in e.jobs}
    groups: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for size in sizes:
        g = groups[size.group]
        g[0] += (by_id[size.job_id].hours or 0.0) * 3600
        g[1] += per_job.get(size.job_id, 0.0)
        g[2] += 1
    estimated = e.hours * 3600
    measured = sum(per_job.values())
    ratio = estimated / measured
    lines = [f"{'group':<52}{'jobs':>5}{'estimate s':>12}{'measured s':>12}{'ratio':>7}"]
    for name, (es, ms, n) in sorted(groups.items()):
        lines.append(f"{name[:51]:<52}{n:>5}{es:>12.0f}{ms:>12.0f}{es / ms if ms else 0:>7.2f}")
    lines.append(f"{'total (' + str(len(per_job)) + ' jobs)':<52}{len(per_job):>5}"
                 f"{estimated:>12.0f}{measured:>12.0f}{ratio:>7.2f}")
    ok = abs(ratio - 1) <= args.tolerance
    lines.append(f"estimate / measured = {ratio:.3f}: {'within' if ok else 'OUTSIDE'} "
                 f"±{args.tolerance:.0%} (CPU-seconds of this process, {args.threads} "
                 f"thread(s); the study took {wall:.0f} s wall, {total:.0f} CPU-s with the "
                 f"executor's own work)")
    print("\n".join(lines))
    if args.out:
        atomic_write_json(args.out, {
            "manifest": str(args.manifest), "threads": args.threads, "baseline": bench,
            "baseline_drift": after_tp / before_tp - 1,
            "startup_cpu_s": startup, "estimate_s": estimated, "measured_cpu_s": measured,
            "ratio": ratio, "within_tolerance": ok, "tolerance": args.tolerance,
            "study_wall_s": wall, "per_job_cpu_s": per_job,
            "per_job_estimate_s": {j.job_id: (j.hours or 0.0) * 3600 for j in e.jobs},
            "groups": {k: {"jobs": v[2], "estimate_s": v[0], "measured_cpu_s": v[1]}
                       for k, v in groups.items()}})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
