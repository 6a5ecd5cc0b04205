"""What a text-matched control job costs against its named baseline, the
multi-task job it replays, in the same process -- and against the repeat control's jobs.

The jobs are the first seed's of ``manifests/demo_text_controlled.toml`` (MiniLM, the prepared
data), its training subsets scaled by ``--scale`` (``max_train_examples`` x scale, validation
and test subsets ``--eval-examples``) so the run fits a shared machine; the repeat control is
the same manifest with ``control = "repeat"``.  Each job runs ``--repeats`` times (the
multi-task job first: its result sets the targets; the controls in rotating order); per job
the fastest wall time and its process CPU time are printed, then the ratios text / multi-task
and repeat / multi-task (1.0 = costs what the multi-task job costs), and the tokens that make
the claim: a text job's real tokens per task equal the multi-task job's.

    HF_HUB_OFFLINE=1 python benchmarks/text_control_cost.py [--scale 0.25] [--repeats 1]
        [--eval-examples 32] [--threads 2] [--out FILE.json]

The figures also go to one result document (``benchmark_record``: commit, host, device,
versions), by default under the ignored ``benchmarks/out/``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import benchmark_record
import torch

from runner.jobapi import JobContext
from runner.recipes import train_job as engine_job
from runner.study.manifest import parse_manifest
from runner.study.plan import build_plan

ROOT = Path(__file__).resolve().parents[1]   # the manifest and data/ it runs on
MANIFEST = ROOT / "manifests" / "demo_text_controlled.toml"


def scaled_manifest(control: str, scale: float, eval_examples: int) -> str:
    text = MANIFEST.read_text(encoding="utf-8")
    text = text.replace("max_train_examples = {bc2gm = 400, gad = 200}",
                        f"max_train_examples = {{bc2gm = {max(8, round(400 * scale))}, "
                        f"gad = {max(8, round(200 * scale))}}}")
    text = text.replace("max_eval_examples = 100", f"max_eval_examples = {eval_examples}")
    text = text.replace("seeds = [1, 2, 3]", "seeds = [1]")
    return text.replace('control = "text"', f'control = "{control}"')


def run(job, results: dict, tmp: Path, tag: str) -> dict:
    work = tmp / f"{tag}-{job.job_id}-{len(list(tmp.iterdir()))}"
    work.mkdir()
    ctx = JobContext(job_dir=work, data_dir=ROOT / "data",
                     dependency_results={d: results[d] for d in job.depends_on})
    wall, cpu = time.perf_counter(), time.process_time()
    result = engine_job.run_job(job, ctx)
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
            "result": result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--eval-examples", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, help="the result document (default: "
                    "benchmarks/out/text_control_cost-<UTC>.json)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    plans = {c: build_plan(parse_manifest(scaled_manifest(c, args.scale, args.eval_examples),
                                          str(MANIFEST)), ROOT / "data")
             for c in ("text", "repeat")}
    mt = next(j for j in plans["text"].jobs if j.strategy == "multi_task")
    controls = {c: [j for j in plans[c].jobs if j.strategy == "token_controlled"]
                for c in plans}
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        results: dict[str, dict] = {}
        for r in range(args.repeats):
            # the reference first (its result sets the targets), the controls rotated
            ctrl = [(f"{c} {j.tasks[0]}", j) for c in ("text", "repeat") for j in controls[c]]
            ctrl = ctrl[r % len(ctrl):] + ctrl[:r % len(ctrl)]
            for name, job in [("multi_task", mt), *ctrl]:
                out = run(job, results, tmp, name.replace(" ", "-"))
                if name == "multi_task":
                    results[mt.job_id] = out["result"]
                best = rows.get(name)
                if best is None or out["wall_s"] < best["wall_s"]:
                    rows[name] = {"wall_s": round(out["wall_s"], 2),
                                  "cpu_s": round(out["cpu_s"], 2),
                                  "tokens_per_task": out["result"]["tokens_per_task"],
                                  "steps": out["result"]["train_results"]["steps"]}
    base = rows["multi_task"]
    for name, row in rows.items():
        row["wall_vs_multi_task"] = round(row["wall_s"] / base["wall_s"], 3)
        row["cpu_vs_multi_task"] = round(row["cpu_s"] / base["cpu_s"], 3)
        print(f"{name:<14} wall {row['wall_s']:8.1f} s ({row['wall_vs_multi_task']:.2f}x MT)  "
              f"cpu {row['cpu_s']:8.1f} s ({row['cpu_vs_multi_task']:.2f}x MT)  "
              f"steps {row['steps']}  tokens {row['tokens_per_task']}")
    same = all(rows[f"text {j.tasks[0]}"]["tokens_per_task"] == base["tokens_per_task"]
               for j in controls["text"])
    print(f"text controls' tokens per task equal the multi-task job's: {same}")
    doc = {"scale": args.scale, "eval_examples": args.eval_examples, "threads": args.threads,
           "repeats": args.repeats, "baseline": "multi_task", "rows": rows,
           "text_tokens_equal_multi_task": same}
    print(json.dumps(doc))
    record = benchmark_record.document("text_control_cost", doc, package="runner",
                                       device=benchmark_record.cpu_device(args.threads))
    print(f"result: {benchmark_record.write(record, args.out)}")


if __name__ == "__main__":
    main()
