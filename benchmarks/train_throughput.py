"""Training throughput on BC2GM: the engine vs a plain Hugging Face ``Trainer``, same process.

Same model (minilm), data subset, hyperparameters, one epoch each:

* ``engine``          runner.engine (dynamic padding, length-grouped batches, one loop);
* ``trainer``         ``Trainer`` + ``DataCollatorForTokenClassification`` (pads each batch to
                      its longest; random order -- the run_ner.py default);
* ``trainer_grouped`` the same with ``train_sampling_strategy="group_by_length"`` (5.x) /
                      ``group_by_length=True`` (4.x).

Reported per run: real (non-padding) training tokens per second in the steady state (from the
end of the first optimizer step to the end of the last: no loading, no evaluation), padding
share of the tokens fed, test entity F1 (every run scored here in input order with
runner.metrics.evaluate; the Trainer's ``predict`` is not used because with group_by_length
5.x also reorders evaluation), and model FLOPs utilisation:

    MFU = (6 * P + 12 * L * H * S) * real_tokens / seconds / peak

with P the non-embedding parameters, L layers, H hidden size, S the mean padded length (the
attention term), counting only real tokens (padding is not useful work), against a float32
matmul peak measured here.  Finally the time from restarting an interrupted engine job (same
process: imports excluded) to its first resumed optimizer step.

    python benchmarks/train_throughput.py [--train-examples 800] [--test-examples 500]
                                          [--repeats 2] [--threads 2]

On a shared machine the wall-clock figures are noisy: each configuration runs ``--repeats``
times in rotating order and the fastest is reported; real tokens per CPU-second of this process
are printed beside them.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from runner.data import load_split
from runner.engine import batching
from runner.engine import job as engine_job
from runner.engine.batching import encode_split
from runner.jobapi import JobContext, JobInterrupted
from runner.metrics import evaluate
from runner.models_registry import resolve_model
from runner.plan import Job
from runner.tasks import get_task

TASK = "bc2gm"


def matmul_peak_flops(n: int = 1024, seconds: float = 3.0) -> float:
    """float32 matmul FLOP/s at this thread count: 2 n^3 per product, best of short runs."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best, end = 0.0, time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * n ** 3 / (time.perf_counter() - t))
    return best


class StepClock:
    """(time, real tokens so far) at the end of every optimizer step."""

    def __init__(self):
        self.marks: list[tuple[float, int, float]] = []

    def mark(self, tokens: int) -> None:
        self.marks.append((time.perf_counter(), int(tokens), time.process_time()))

    def tokens_per_cpu_s(self) -> float:
        """Real tokens per CPU-second of this process: robust to other processes taking the
        cores (a shared machine inflates wall time, much less CPU time)."""
        (_, k0, c0), (_, k1, c1) = self.marks[0], self.marks[-1]
        return (k1 - k0) / (c1 - c0)

    def steady_tokens_per_s(self) -> float:
        (t0, k0, _), (t1, k1, _) = self.marks[0], self.marks[-1]
        return (k1 - k0) / (t1 - t0)

    def steady_seconds(self) -> float:
        return self.marks[-1][0] - self.marks[0][0]


def flops_per_real_token(config, mean_padded_len: float) -> float:
    h, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    p = layers * (4 * h * h + 2 * h * inter)  # attention projections + feed-forward (no biases)
    return 6 * p + 12 * layers * h * mean_padded_len


def make_job(model_name: str, cfg: dict, seed: int) -> Job:
    return Job(job_id="benchmark000", study="benchmark", experiment="engine",
               strategy="single_task", experiment_type="single_task_baseline", model="minilm",
               model_name=model_name, tasks=(TASK,), seed=seed, config=cfg, depends_on=(),
               parity=None, data_checksums={})


def run_engine(model_name, cfg, seed, data_dir, work: Path, should_stop=None):
    clock = StepClock()
    ctx = JobContext(job_dir=work, data_dir=data_dir,
                     heartbeat=lambda p: clock.mark(p["tokens"]),
                     should_stop=should_stop or (lambda: False))
    work.mkdir(parents=True, exist_ok=True)
    result = engine_job.run_job(make_job(model_name, cfg, seed), ctx)
    return result, clock


def run_trainer(model_name, cfg, seed, train_df, test_df, grouped: bool, work: Path):
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    spec = get_task(TASK)
    tok = AutoTokenizer.from_pretrained(model_name)
    length = batching.effective_max_length(spec.max_length, cfg["max_length"], tok)
    train = encode_split(spec, train_df, tok, length)
    features = [{"input_ids": train.input_ids[i].tolist(),
                 "attention_mask": [1] * int(train.lengths[i]),
                 "token_type_ids": train.token_type_ids[i].tolist(),
                 "labels": train.labels[i].tolist()} for i in range(len(train))]
    fed = {"real": 0, "padded": 0}
    base_collator = DataCollatorForTokenClassification(tok)

    def collator(batch):
        out = base_collator(batch)
        fed["real"] += int(out["attention_mask"].sum())
        fed["padded"] += int(out["attention_mask"].numel())
        return out

    clock = StepClock()

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            clock.mark(fed["real"])

    kwargs = {"output_dir": str(work), "disable_tqdm": True,
              "per_device_train_batch_size": cfg["batch_size"],
              "learning_rate": cfg["learning_rate"], "num_train_epochs": cfg["max_epochs"],
              "warmup_steps": cfg["warmup_steps"], "weight_decay": cfg["weight_decay"],
              "save_strategy": "no", "eval_strategy": "no", "logging_strategy": "no",
              "report_to": [], "seed": seed, "dataloader_num_workers": 0, "use_cpu": True}
    fields = inspect.signature(TrainingArguments).parameters
    if grouped:
        if "train_sampling_strategy" in fields:
            kwargs["train_sampling_strategy"] = "group_by_length"
        else:
            kwargs["group_by_length"] = True
    if "eval_strategy" not in fields:  # transformers 4.40
        kwargs["evaluation_strategy"] = kwargs.pop("eval_strategy")
    torch.manual_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(model_name, num_labels=3)
    trainer = Trainer(model=model, args=TrainingArguments(**kwargs), train_dataset=features,
                      data_collator=collator, callbacks=[Clock()])
    trainer.train()

    # test F1: predict in input order ourselves, first sub-token of each word
    test = encode_split(spec, test_df, tok, length)
    model.eval()
    preds = [None] * len(test)
    with torch.inference_mode():
        for idx in batching.eval_batches(test.lengths, 32):
            batch = batching.collate(test, idx, tok.pad_token_id)
            inputs = {k: v for k, v in batch.tensors.items() if k != "labels"}
            logits = model(**inputs).logits.numpy()
            for row, i in enumerate(idx):
                preds[int(i)] = batching.word_predictions(test, int(i), logits[row].argmax(-1),
                                                          spec.labels)
    metrics, _ = evaluate(spec, test_df, preds)
    return {"tokens_per_s": clock.steady_tokens_per_s(), "steady_s": clock.steady_seconds(),
            "tokens_per_cpu_s": clock.tokens_per_cpu_s(),
            "padding_share": 1 - fed["real"] / fed["padded"], "real_tokens": fed["real"],
            "f1": metrics["f1"], "mean_padded_len": fed["padded"] / len(features)}, model.config


def engine_padding(model_name, cfg, seed, train_df) -> tuple[float, float]:
    """Padding share and mean padded length of the engine's epoch-0 plan (what it fed)."""
    from transformers import AutoTokenizer
    spec = get_task(TASK)
    tok = AutoTokenizer.from_pretrained(model_name)
    split = encode_split(spec, train_df, tok,
                         batching.effective_max_length(spec.max_length, cfg["max_length"], tok))
    plan = batching.epoch_plan(split.lengths, cfg["batch_size"], seed, TASK, 0)
    real = int(split.lengths.sum())
    padded = sum(int(split.lengths[b].max()) * len(b) for b in plan)
    return 1 - real / padded, padded / len(split)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-examples", type=int, default=800)
    ap.add_argument("--test-examples", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default=str(REPO / "data"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="runs per configuration (best kept)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model_name = resolve_model("minilm")
    data_dir = Path(args.data_dir)
    cfg = {"learning_rate": 3e-4, "warmup_steps": 10, "weight_decay": 0.01, "max_length": 128,
           "batch_size": 16, "grad_accumulation": 1, "max_epochs": 1, "eval_every": 10**6,
           "patience": 3, "min_delta": 1e-4, "max_train_examples": {TASK: args.train_examples},
           "max_eval_examples": args.test_examples, "checkpoint_every_s": 10**6,
           "precision": "auto", "sampling": "proportional", "temperature": 1.0,
           "examples_cap": None, "max_steps": None, "adapter": None}
    train_df = engine_job._subsample(load_split(data_dir, TASK, "train"), args.train_examples)
    test_df = engine_job._subsample(load_split(data_dir, TASK, "test"), args.test_examples)

    peak = matmul_peak_flops()
    print(f"matmul peak (fp32, {args.threads} threads): {peak / 1e9:.1f} GFLOP/s")
    # Other processes share this machine's cores: each configuration runs --repeats times,
    # in rotating order, and the fastest run of each is kept (as ``timeit`` does).
    runs: dict[str, list[dict]] = {"engine": [], "trainer": [], "trainer_grouped": []}
    order = list(runs)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = None
        for rep in range(args.repeats):
            for name in order[rep % 3:] + order[:rep % 3]:
                work = tmp / f"{name}-{rep}"
                if name == "engine":
                    result, clock = run_engine(model_name, cfg, args.seed, data_dir, work)
                    pad, mean_len = engine_padding(model_name, cfg, args.seed, train_df)
                    row = {"tokens_per_s": clock.steady_tokens_per_s(),
                           "tokens_per_cpu_s": clock.tokens_per_cpu_s(),
                           "steady_s": clock.steady_seconds(), "padding_share": pad,
                           "real_tokens": result["token_count"],
                           "f1": result["test_results"]["eval_f1"], "mean_padded_len": mean_len}
                else:
                    row, config = run_trainer(model_name, cfg, args.seed, train_df, test_df,
                                              name == "trainer_grouped", work)
                runs[name].append(row)
                print(f"  {name} run {rep + 1}: {row['tokens_per_s']:.0f} real tokens/s, "
                      f"F1 {row['f1']:.4f}", flush=True)
        rows = {name: max(rs, key=lambda r: r["tokens_per_s"]) for name, rs in runs.items()}
        for row in rows.values():
            row["mfu"] = (flops_per_real_token(config, row["mean_padded_len"])
                          * row["tokens_per_s"] / peak)

        # restart -> first resumed step: interrupt an engine job at step 20, run it again
        calls = {"n": 0}

        def stop_at_20():
            calls["n"] += 1
            return calls["n"] == 20
        try:
            run_engine(model_name, cfg, args.seed, data_dir, tmp / "resume", stop_at_20)
        except JobInterrupted:
            pass
        first_step = {}

        class FirstStep(Exception):
            pass

        def on_step(progress):
            first_step["t"] = time.perf_counter()
            raise FirstStep
        t0 = time.perf_counter()
        try:
            engine_job.run_job(make_job(model_name, cfg, args.seed),
                               JobContext(job_dir=tmp / "resume", data_dir=data_dir,
                                          heartbeat=on_step))
        except FirstStep:
            pass
        restart_s = first_step["t"] - t0

    print(f"BC2GM, minilm, {args.train_examples} training / {len(test_df)} test sentences, "
          f"batch {cfg['batch_size']}, lr {cfg['learning_rate']}, max_length {cfg['max_length']}, "
          f"1 epoch; fastest of {args.repeats} runs each")
    print(f"{'run':<16}{'real tok/s':>11}{'x default':>10}{'tok/CPU-s':>10}{'x default':>10}"
          f"{'padding':>9}{'test F1':>9}{'MFU':>7}{'steady s':>10}")
    base = rows["trainer"]
    for name, r in rows.items():
        print(f"{name:<16}{r['tokens_per_s']:>11.0f}{r['tokens_per_s'] / base['tokens_per_s']:>10.2f}"
              f"{r['tokens_per_cpu_s']:>10.0f}"
              f"{r['tokens_per_cpu_s'] / base['tokens_per_cpu_s']:>10.2f}"
              f"{r['padding_share']:>9.1%}{r['f1']:>9.4f}{r['mfu']:>7.1%}{r['steady_s']:>10.1f}")
    print(f"restart -> first resumed step: {restart_s:.2f} s (in process; imports excluded)")
    print(json.dumps({"peak_flops": peak, "best": rows, "all_runs": runs,
                      "restart_to_first_step_s": restart_s}))


if __name__ == "__main__":
    main()
