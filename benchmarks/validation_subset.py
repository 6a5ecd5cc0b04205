"""Model selection on a validation subset against the full validation set.

``max_validation_examples`` (runner.data.splits.validation_subset_positions: a fixed,
stratified, seed-independent draw; the test sets are untouched) makes early stopping and the
choice of the tested weights cheaper.  Whether it changes WHICH weights are chosen, and the
test score they get, is measured here rather than assumed.

For each task and seed, ONE engine run (``runner.recipes.train_job.run_job`` as a study runs
it, MiniLM) is validated every ``--eval-every`` steps on the FULL validation set; the same
predictions are scored on the subset of each size in ``--sizes`` (the subset's rows of the
full predictions: what a run validated on the subset alone would compute, as the engine's
inference is per example), and the weights of every validation are kept.  The engine's
early-stopping rule (patience, min_delta, a tie broken by the lower validation loss -- the
full set's loss here, for every criterion) is then replayed on each criterion's score
sequence: training is deterministic and identical until a criterion stops, so the replay is
what separate runs would select.  Each distinct selected step is tested (the task's test set,
or a fixed ``--test-examples`` subset of it, the same for every criterion).

Printed per task and size: the selected step of full vs subset per seed, how often they
agree, the test score of each, and the paired mean difference (subset - full) with its range;
``--out`` keeps the raw per-seed numbers (rewritten after every run, so a long measurement can
be read part way and resumed with ``--resume``).

    nice python benchmarks/validation_subset.py --out validation_subset.json \
        [--tasks bc2gm,chemprot] [--seeds 1-3] [--sizes 500,1000,2000] \
        [--train-examples bc2gm=3000,chemprot=4000] [--test-examples chemprot=4000]
        [--eval-every bc2gm=47,chemprot=125] [--evals 12] [--lr 1e-4] [--max-length 128]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")   # a CPU measurement

import torch  # noqa: E402

import train_throughput as tt  # noqa: E402

from runner.data.splits import subsample, validation_subset_positions  # noqa: E402
from runner.data.tasks import get_task  # noqa: E402
from mtl_contract.files import atomic_write_json  # noqa: E402
from runner.ml import train as engine_train  # noqa: E402
from runner.ml.inference import predict  # noqa: E402
from runner.ml.metrics import evaluate  # noqa: E402
from runner.jobapi import JobInterrupted  # noqa: E402
from runner.recipes import train_job as engine_job  # noqa: E402


def per_task(text: str, tasks: list[str], default) -> dict:
    out = {t: default for t in tasks}
    for part in filter(None, text.split(",")):
        task, _, value = part.partition("=")
        out[task] = None if value == "all" else int(value)
    return out


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--tasks", default="bc2gm,chemprot")
    ap.add_argument("--seeds", default="1-3")
    ap.add_argument("--sizes", default="500,1000,2000")
    ap.add_argument("--train-examples", default="bc2gm=3000,chemprot=4000")
    ap.add_argument("--test-examples", default="chemprot=4000")
    ap.add_argument("--validation-pool", default="",
                    help="task=n: validate on a fixed n-example draw (runner.data.splits."
                    "subsample, as max_eval_examples) as 'full' -- only where the full set "
                    "does not fit the time available; the tables say so")
    ap.add_argument("--eval-every", default="bc2gm=47,chemprot=125")
    ap.add_argument("--evals", default="bc2gm=12,chemprot=6",
                    help="validations per run (the run stops after the last)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup-steps", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--min-delta", type=float, default=1e-4)
    ap.add_argument("--merge", type=Path, nargs="*", default=[],
                    help="more files of the same settings whose runs are added to --out's "
                    "in the tables (seeds measured by other processes)")
    ap.add_argument("--draws", type=int, default=0,
                    help="also replay the selection on this many other stratified draws")
    args = ap.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    lo, _, hi = args.seeds.partition("-")
    args.seeds = list(range(int(lo), int(hi or lo) + 1))
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.train_examples = per_task(args.train_examples, args.tasks, None)
    args.test_examples = per_task(args.test_examples, args.tasks, None)
    args.validation_pool = per_task(args.validation_pool, args.tasks, None)
    args.eval_every = per_task(args.eval_every, args.tasks, 100)
    args.evals = per_task(args.evals, args.tasks, 8)
    return args


def replay(scores: list[float], losses: list[float], patience: int, min_delta: float) -> dict:
    """runner.ml.train's early stopping on one score sequence: (selected index, stop index)."""
    best = best_i = None
    bad = 0
    i = -1
    for i, (s, loss) in enumerate(zip(scores, losses)):
        s = s if math.isfinite(s) else -math.inf
        if best is None or s > best + min_delta or (s == best and loss < losses[best_i]):
            best, best_i, bad = s, i, 0
        else:
            bad += 1
            if bad >= patience:
                break
    return {"selected": best_i, "stopped_at": i}


def slice_split(split, positions: list[int]):
    """An EncodedSplit of the given examples (per-example lists sliced, lengths too)."""
    pick = lambda xs: None if xs is None else [xs[i] for i in positions]  # noqa: E731
    return dataclasses.replace(split, input_ids=pick(split.input_ids),
                               token_type_ids=pick(split.token_type_ids),
                               labels=pick(split.labels), word_first=pick(split.word_first),
                               lengths=np.asarray(split.lengths)[positions])


def measure_one(args, task: str, seed: int, work: Path) -> dict:
    spec = get_task(task)
    every, n_evals = args.eval_every[task], args.evals[task]
    cfg = {"learning_rate": args.lr, "warmup_steps": args.warmup_steps, "weight_decay": 0.01,
           "max_length": args.max_length, "batch_size": args.batch_size,
           "grad_accumulation": 1, "max_epochs": 1000, "eval_every": every,
           "patience": 10 ** 6, "min_delta": args.min_delta,
           "max_train_examples": {task: args.train_examples[task]},
           "max_eval_examples": args.validation_pool[task], "checkpoint_every_s": 10 ** 9, "precision": "fp32",
           "max_steps": every * n_evals + 1, "compile": False}
    history: list[dict] = []
    captured: dict = {}
    original_validate, original_load = engine_train.validate, engine_job.load_job_data

    def load(ctx, config, specs, tokenizer, limit):
        captured["data"] = original_load(ctx, config, specs, tokenizer, limit)
        return captured["data"]

    def validate(model, setup, dtype):
        t = setup.tasks[task]
        start = time.perf_counter()
        preds, loss = predict(model, t.spec, t.validation, setup.pad_id, setup.device, dtype,
                              engine_train.eval_batch_size(setup.batch_size))
        full, _ = setup.metrics_fn(t.spec, t.validation_df, preds)
        entry = {"step": (len(history) + 1) * every, "loss": float(loss),
                 "full": float(full[spec.primary_metric]), "subset": {},
                 "validation_s": 0.0}
        for n in args.sizes:
            pos = validation_subset_positions(spec.kind, t.validation_df, n)
            m, _ = setup.metrics_fn(t.spec, t.validation_df.iloc[pos].reset_index(drop=True),
                                    [preds[i] for i in pos])
            entry["subset"][str(n)] = float(m[spec.primary_metric])
        entry["validation_s"] = time.perf_counter() - start
        # every example's prediction, so that other subsets (other draws) can be scored later
        entry["predictions"] = [list(map(str, p)) if isinstance(p, (list, np.ndarray)) else p
                                for p in preds]
        torch.save(model.state_dict(), work / f"weights_{entry['step']}.pt")
        captured["model"], captured["pad_id"] = model, setup.pad_id
        history.append(entry)
        print(f"  {task} seed {seed} step {entry['step']}: full {entry['full']:.4f} "
              + " ".join(f"{n}:{v:.4f}" for n, v in entry["subset"].items())
              + f" ({entry['validation_s']:.0f} s)", flush=True)
        metrics = {k: float(v) for k, v in full.items()}
        metrics["loss"] = float(loss)
        return {task: metrics}, float(full[spec.primary_metric])

    engine_train.validate, engine_job.load_job_data = validate, load
    start = time.perf_counter()
    try:
        tt.run_engine(tt.resolve_model("minilm"), cfg, seed, engine_job_data_dir(), work,
                      torch.device("cpu"), should_stop=lambda: len(history) >= n_evals,
                      task=task)
    except JobInterrupted:
        pass   # stopped after the last validation: the selection is replayed below
    finally:
        engine_train.validate, engine_job.load_job_data = original_validate, original_load
    train_s = time.perf_counter() - start
    losses = [h["loss"] for h in history]
    criteria = {"full": [h["full"] for h in history]}
    criteria.update({str(n): [h["subset"][str(n)] for h in history] for n in args.sizes})
    chosen = {k: replay(v, losses, args.patience, args.min_delta) for k, v in criteria.items()}
    # test each distinct selected step (the same test examples for every criterion)
    data = captured["data"].frames[task]
    test_df, encoded = data["test"], data["encoded_test"]
    n_test = args.test_examples[task]
    if n_test is not None and len(test_df) > n_test:
        keep = subsample(test_df.reset_index().rename(columns={"index": "_pos"}), n_test)
        positions = [int(p) for p in keep["_pos"]]
        test_df = test_df.iloc[positions].reset_index(drop=True)
        encoded = slice_split(encoded, positions)
    model = captured["model"]
    tested: dict[int, float] = {}
    for sel in chosen.values():
        step = history[sel["selected"]]["step"]
        if step not in tested:
            model.load_state_dict(torch.load(work / f"weights_{step}.pt", weights_only=True))
            preds, _ = predict(model, spec, encoded, captured["pad_id"], torch.device("cpu"),
                               None, 64)
            m, _ = evaluate(spec, test_df, preds)
            tested[step] = float(m[spec.primary_metric])
        sel["step"] = step
        sel["stop_step"] = history[sel["stopped_at"]]["step"]
        sel["test"] = tested[step]
        sel["validations_run"] = sel["stopped_at"] + 1
    return {"history": history, "criteria": chosen, "seconds": time.perf_counter() - start,
            "train_and_validation_s": train_s, "test_examples": len(test_df),
            "validation_examples": len(captured["data"].frames[task]["validation"])}


def validation_frame(task: str, pool: int | None):
    """The validation rows a run scored (the whole split, or its ``--validation-pool``)."""
    from runner.data.splits import load_split
    return subsample(load_split(engine_job_data_dir(), task, "validation"), pool)


def other_draws(task: str, runs: dict, sizes: list[int], pool: int | None, draws: int,
                patience: int, min_delta: float) -> dict[int, dict]:
    """How often a subset OTHER than the shipped one (stratified draws with seeds 1..draws)
    selects the same step as the full set, from the stored per-example predictions: the
    shipped draw is one of many equally likely ones, so this is the agreement to expect."""
    spec = get_task(task)
    frame = validation_frame(task, pool)
    out = {}
    for n in sizes:
        same = total = 0
        for draw in range(1, draws + 1):
            pos = validation_subset_positions(spec.kind, frame, n, seed=draw)
            sub = frame.iloc[pos].reset_index(drop=True)
            for run in runs.values():
                hist = run["history"]
                scores = [float(evaluate(spec, sub, [h["predictions"][i] for i in pos])[0]
                                [spec.primary_metric]) for h in hist]
                chosen = replay(scores, [h["loss"] for h in hist], patience, min_delta)
                same += chosen["selected"] == run["criteria"]["full"]["selected"]
                total += 1
        out[n] = {"same_step": same, "runs": total}
    return out


def engine_job_data_dir() -> Path:
    return HERE.parent / "data"


def summary(task: str, runs: dict, sizes: list[int]) -> list[str]:
    seeds = sorted(runs, key=int)
    if not seeds:
        return []
    first = runs[seeds[0]]
    lines = [f"{task}: {len(seeds)} seeds, validation {first['validation_examples']} "
             f"examples, test {first['test_examples']}"]
    full = [runs[s]["criteria"]["full"] for s in seeds]
    lines.append("  full      steps " + " ".join(f"{c['step']:>5}" for c in full)
                 + "  test " + " ".join(f"{c['test']:.4f}" for c in full))
    for n in sizes:
        sub = [runs[s]["criteria"][str(n)] for s in seeds]
        agree = sum(a["step"] == b["step"] for a, b in zip(full, sub))
        diff = [b["test"] - a["test"] for a, b in zip(full, sub)]
        lines.append(f"  subset {n:<5}steps " + " ".join(f"{c['step']:>5}" for c in sub)
                     + "  test " + " ".join(f"{c['test']:.4f}" for c in sub)
                     + f"  same step {agree}/{len(seeds)}; test subset-full mean "
                     f"{100 * np.mean(diff):+.2f} points [{100 * min(diff):+.2f}, "
                     f"{100 * max(diff):+.2f}]")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get("VALIDATION_SUBSET_THREADS", "2")))
    store = json.loads(args.out.read_text()) if args.resume and args.out.exists() else {}
    store.setdefault("settings", {k: v for k, v in vars(args).items()
                                  if k not in ("out", "resume")})
    store.setdefault("runs", {})
    merged: dict = {}   # runs of other processes' files: shown, not measured again
    for extra in args.merge:
        for task, runs in json.loads(extra.read_text())["runs"].items():
            merged.setdefault(task, {}).update(runs)
    for task in args.tasks:
        for seed in args.seeds:
            if str(seed) in store["runs"].get(task, {}) or str(seed) in merged.get(task, {}):
                continue
            work = Path(tempfile.mkdtemp(prefix=f"valsub_{task}_{seed}_"))
            try:
                run = measure_one(args, task, seed, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            store["runs"].setdefault(task, {})[str(seed)] = run
            atomic_write_json(args.out, store)
    for task in args.tasks:
        runs = {**merged.get(task, {}), **store["runs"].get(task, {})}
        print("\n".join(summary(task, runs, args.sizes)))
        if args.draws and runs:
            agree = other_draws(task, runs, args.sizes, args.validation_pool[task], args.draws,
                                args.patience, args.min_delta)
            store.setdefault("other_draws", {})[task] = agree
            for n, a in agree.items():
                print(f"  other draws of {n}: same step as the full set in {a['same_step']} "
                      f"of {a['runs']} (draw, seed) replays ({100 * a['same_step'] / a['runs']:.0f}%)")
    if args.merge or args.draws:
        atomic_write_json(args.out.with_suffix(".summary.json"),
                          {"settings": store["settings"], "other_draws":
                           store.get("other_draws", {}),
                           "runs": {t: {s: {k: v for k, v in r.items() if k != "history"}
                                        for s, r in {**merged.get(t, {}), **rs}.items()}
                                    for t, rs in store["runs"].items()}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
