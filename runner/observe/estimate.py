"""What a study will cost before it runs: ``python -m runner plan MANIFEST --estimate
[--gpu t4|p100|a100|h100|cpu] [--throughput FILE] [--quota-hours 30]``.

An ESTIMATE, and what it assumes:

* tokens: each job's real (non-padding) training tokens are the design check's projection
  from the prepared data's token counts (data/TOKEN_LENGTHS.json, counted with the demo
  encoder's tokenizer: other vocabularies split differently) for its whole planned budget --
  every epoch, no early stopping, so an upper bound -- and, for a token-controlled job, its
  target as projected; evaluation tokens are the validation subset once per ``eval_every``
  optimizer steps plus the test set (twice for a token-controlled job: final and best
  weights);
* FLOPs per real token (the formula of benchmarks/train_throughput.py, so a measured MFU
  plugs in unchanged), with P the non-embedding parameters (embedding lookups are not
  matmuls), L layers, H hidden size, S the mean tokens per example (the engine batches
  examples of similar length, so padding is small):

      training   6 P + 12 L H S      (forward + backward, weights and attention scores)
      evaluation 2 P +  4 L H S      (forward only)

* training FLOPs are counted on the tokens the engine processes: the real ones plus the
  padding of its length-grouped batches (each example padded to its batch's longest), from
  the token counts and the batching rule (runner.study.batch_groups) -- a few percent on a
  whole task, up to ~40% on a subset of a few hundred examples; evaluation batches are
  sorted by length, their padding is not counted;
* time = FLOPs / (peak x MFU) + a fixed start-up per job (loading the model and data,
  checkpoints), where peak is the datasheet's dense tensor-core figure for the GPU and the
  MFU (model FLOPs utilisation) either the default below or measured: given the JSON that
  ``benchmarks/train_throughput.py`` prints (its last line), the measured model FLOP/s of
  its ``engine`` rows is used when it ran on the same kind of device, its datasheet MFU when
  it ran on another GPU;
* CPU: no datasheet peak: a measured file's FLOP/s, else ``CPU_DEFAULT_FLOPS`` (2 cores,
  from a throughput measurement of the engine: see there).

Kaggle's weekly GPU quota (30 h by default: the quota Kaggle states, which varies) is
compared with the total; a job runs on one GPU.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


# ---------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    max_positions: int = 512

    @property
    def non_embedding_params(self) -> int:
        """Attention projections (4 H^2) and feed-forward (2 H I) per layer, no biases."""
        return self.layers * (4 * self.hidden ** 2 + 2 * self.hidden * self.intermediate)

    @property
    def params(self) -> int:
        """All parameters (approximately: embeddings, layers with biases and norms, pooler)."""
        h = self.hidden
        per_layer = 4 * h * h + 2 * h * self.intermediate + 9 * h + self.intermediate
        return (self.vocab + self.max_positions + 2) * h + 2 * h + self.layers * per_layer \
            + h * h + h


# Published configurations (config.json of each checkpoint); total parameters in brackets.
MODEL_SHAPES: dict[str, Shape] = {
    "bert-base-uncased": Shape(12, 768, 3072, 30522),                     # 110M
    "bert-base-cased": Shape(12, 768, 3072, 28996),                       # 108M
    "biobert": Shape(12, 768, 3072, 28996),                                # 108M (cased vocab)
    "dmis-lab/biobert-v1.1": Shape(12, 768, 3072, 28996),
    "scibert": Shape(12, 768, 3072, 31090),                                # 110M
    "allenai/scibert_scivocab_uncased": Shape(12, 768, 3072, 31090),
    "pubmedbert": Shape(12, 768, 3072, 30522),                             # 110M
    "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract": Shape(12, 768, 3072, 30522),
    "bert-large-uncased": Shape(24, 1024, 4096, 30522),                   # 335M
    "minilm": Shape(6, 384, 1536, 30522),                                  # 22.7M
    "sentence-transformers/all-MiniLM-L6-v2": Shape(6, 384, 1536, 30522),
}


def model_shape(name: str) -> Shape | None:
    """The table's shape for an alias or hub id, else one read from a local model folder's
    config.json (BERT-style field names); None when neither."""
    if name in MODEL_SHAPES:
        return MODEL_SHAPES[name]
    config = Path(name) / "config.json"
    try:
        c = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    try:
        hidden = int(c.get("hidden_size") or c["dim"])
        return Shape(int(c.get("num_hidden_layers") or c["n_layers"]), hidden,
                     int(c.get("intermediate_size") or c.get("hidden_dim") or 4 * hidden),
                     int(c.get("vocab_size", 30522)), int(c.get("max_position_embeddings", 512)))
    except (KeyError, TypeError, ValueError):
        return None


def train_flops_per_token(shape: Shape, seq_len: float) -> float:
    return 6 * shape.non_embedding_params + 12 * shape.layers * shape.hidden * seq_len


def eval_flops_per_token(shape: Shape, seq_len: float) -> float:
    return 2 * shape.non_embedding_params + 4 * shape.layers * shape.hidden * seq_len


# --------------------------------------------------------------------------------- devices
@dataclass(frozen=True)
class Device:
    name: str
    peak: float | None      # dense FLOP/s at the precision used, from the datasheet
    precision: str
    mfu: float | None       # default model FLOPs utilisation (an assumption: see below)
    startup_s: float        # per job: loading model and data, checkpoints


# Peaks: NVIDIA datasheets, dense (no sparsity).  T4: 65 TFLOPS FP16/FP32-mixed tensor cores;
# P100 (PCIe 16 GB, Kaggle's): 18.7 TFLOPS FP16 -- Pascal has no tensor cores, so this is
# the half-precision vector peak (9.3 TFLOPS FP32); A100: 312 TFLOPS BF16/FP16; H100 SXM:
# 989 TFLOPS BF16/FP16 (PCIe: 756).
# Default MFUs: BERT-size encoders fine-tuned on short biomedical sentences (tens of tokens)
# keep a GPU far from its peak -- small matmuls, optimizer and launch overhead; the figures
# are rounded from public BERT fine-tuning reports and are assumptions: measure with
# benchmarks/train_throughput.py and pass --throughput for a figure from your machine.
DEVICES: dict[str, Device] = {
    "t4": Device("NVIDIA T4", 65e12, "fp16", 0.20, 20.0),
    "p100": Device("NVIDIA P100", 18.7e12, "fp16 (no tensor cores)", 0.35, 20.0),
    "a100": Device("NVIDIA A100", 312e12, "bf16", 0.20, 20.0),
    "h100": Device("NVIDIA H100 SXM", 989e12, "bf16", 0.12, 20.0),
    "cpu": Device("CPU (2 cores)", None, "fp32", None, 3.0),
}
# Start-up per job: CPU 3 s = loading MiniLM's tokenizer and model (runner.recipes.train_job's
# load_tokenizer + runner.ml.model.build_model), measured at 2.9 s on the 2-core machine;
# the GPUs' 20 s is an assumption (a BERT-base download-free load plus moving it to the GPU
# and the first CUDA kernels' start-up), not a measurement.
# CPU, no datasheet peak: effective model FLOP/s of the engine on 2 cores (fp32) from a
# THROUGHPUT MEASUREMENT, not from any study run: benchmarks/seed_spread.py measured the engine
# training MiniLM (minilm, 6 layers, hidden 384) on BC2GM at about 1,176 real training tokens/s
# on this project's 2-core machine (batch 16, max_length 128; BC2GM's mean is S = 38 real
# tokens per example) -- the kind of number benchmarks/train_throughput.py measures (pass its
# --out file as --throughput for your machine).  By the training formula below that is
# 1,176 x (6 x 10,616,832 + 12 x 6 x 384 x 38) = 1,176 x 64.75 MFLOP = ~76 GFLOP/s; other models
# scale by their FLOPs per token (BERT-base, 515 MFLOP/token: ~150 tokens/s).
# Jobs are charged per processed token (real + the padding of the engine's length-grouped
# batches), so the default counts that measurement's own padding too: 1.065 processed tokens
# per real one (Padding.ratio("bc2gm", 128, 2000, 16) on data/TOKEN_LENGTHS.json).
CPU_MEASURED_TOKENS_PER_S = 1176.0
CPU_MEASURED_PADDING = 1.065
CPU_DEFAULT_FLOPS = (CPU_MEASURED_TOKENS_PER_S * CPU_MEASURED_PADDING
                     * (6 * 10_616_832 + 12 * 6 * 384 * 38))


@dataclass
class Throughput:
    """Effective model FLOP/s for a job's model, and where the figure comes from."""
    device: Device
    flops_per_s: float
    source: str


# the result documents of benchmarks/benchmark_record.py
BENCHMARK_SCHEMA = "mtl-benchmark/1"


def read_benchmark(path: str | Path) -> dict:
    """The JSON of benchmarks/train_throughput.py: the file as a whole, or its last JSON line
    (the script prints the JSON last; redirect its output to a file).  A benchmark result
    document (``"schema": "mtl-benchmark/1"``, benchmarks/benchmark_record.py) gives its
    ``results``; a flat file (``benchmarks/estimate_vs_measured.py --throughput-out``, and
    train_throughput.py before the result documents) is read as it is."""
    text = Path(path).read_text()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = next((json.loads(line) for line in reversed(text.strip().splitlines())
                    if line.startswith("{")), None)
        if doc is None:
            raise ValueError(f"{path}: no JSON from benchmarks/train_throughput.py found") \
                from None
    if isinstance(doc, dict) and doc.get("schema") == BENCHMARK_SCHEMA:
        return {"source": f"benchmarks/{doc.get('benchmark')}.py at {doc.get('commit')}",
                **doc.get("results", {})}
    return doc


def throughput(kind: str, bench: Mapping[str, Any] | None = None) -> Throughput:
    """Effective FLOP/s on device ``kind`` (t4|p100|a100|h100|cpu)."""
    kind = kind.lower()
    if kind not in DEVICES:
        raise ValueError(f"unknown device {kind!r}; choose from {', '.join(DEVICES)}")
    dev = DEVICES[kind]
    if bench:
        where = str(bench.get("device", ""))
        rows = [r["best"]["engine"] for r in (bench.get("models") or {}).values()
                if isinstance(r, Mapping) and "engine" in (r.get("best") or {})]
        on_cpu = where.upper().startswith("CPU")
        same = on_cpu if kind == "cpu" else (not on_cpu and dev.name.split()[-1].split()[0]
                                             .upper() in where.upper())
        if kind == "h100":
            same = not on_cpu and "H100" in where.upper()
        if rows and same:
            # the slowest model's figure: small models reach lower MFU, so this is cautious
            # per processed token (real + padding), the basis jobs are charged on: a row's
            # ``padding`` is its own batches' processed / real tokens (a row without one is
            # taken as unpadded, which overstates the jobs' time by its padding)
            flops = min(float(r["model_flops_per_s"]) * float(r.get("padding", 1.0))
                        for r in rows)
            return Throughput(dev, flops, f"measured on {where} "
                              f"({bench.get('source', 'benchmarks/train_throughput.py')})")
        mfus = [r.get("mfu_datasheet") for r in rows if r.get("mfu_datasheet")]
        if mfus and not on_cpu and dev.peak:
            mfu = min(mfus)
            return Throughput(dev, dev.peak * mfu,
                              f"MFU {mfu:.0%} measured on {where}, applied to the {dev.name} "
                              f"datasheet peak {dev.peak / 1e12:g} TFLOP/s")
    if dev.peak is None:
        return Throughput(dev, CPU_DEFAULT_FLOPS,
                          f"default {CPU_DEFAULT_FLOPS / 1e9:.3g} GFLOP/s on 2 CPU cores "
                          f"(measured: {CPU_MEASURED_TOKENS_PER_S:g} minilm training tokens/s "
                          "by benchmarks/seed_spread.py; pass --throughput for your machine)")
    return Throughput(dev, dev.peak * dev.mfu,
                      f"default MFU {dev.mfu:.0%} of the {dev.name} datasheet peak "
                      f"{dev.peak / 1e12:g} TFLOP/s {dev.precision}")


# ------------------------------------------------------------------------------- the study
@dataclass
class JobSize:
    """What the estimate needs of one job (the caller computes it from the plan)."""
    job_id: str
    model: str               # alias, hub id or local path (for the shape)
    train_tokens: float      # real training tokens, whole planned budget
    eval_tokens: float = 0.0  # real tokens of all evaluation passes (validation + test)
    seq_len: float = 64.0    # mean real tokens per example
    label: str = ""          # e.g. "experiment model task seed"
    validation_tokens: float = 0.0  # the part of eval_tokens that is validation
    group: str = ""          # the cost driver it counts under: "experiment tasks"
    skipped: str | None = None      # why it will not run (a token-controlled target past its cap)
    # tokens the engine processes in training (each example padded to its batch's longest)
    # over the real ones: from the token counts and runner.study.batch_groups' rule
    train_padding: float = 1.0


@dataclass
class JobEstimate:
    job_id: str
    label: str
    model: str
    params: int | None
    train_tokens: int
    eval_tokens: int
    train_flops: float
    eval_flops: float
    hours: float | None
    validation_flops: float = 0.0
    group: str = ""


@dataclass
class Estimate:
    device: str
    throughput_flops: float
    throughput_source: str
    startup_s: float
    quota_hours: float
    jobs: list[JobEstimate] = field(default_factory=list)
    unknown_models: list[str] = field(default_factory=list)
    devices_per_session: int = 1
    skipped: list[JobSize] = field(default_factory=list)   # not run, not counted
    # hours the skipped jobs would take at their cap (they may run: see render_estimate)
    skipped_hours: float = 0.0

    @property
    def quota_used(self) -> float:
        """Session hours: the device-hours shared by the session's devices (one job each,
        ideally packed)."""
        return self.hours / self.devices_per_session

    @property
    def train_tokens(self) -> int:
        return sum(j.train_tokens for j in self.jobs)

    @property
    def flops(self) -> float:
        return sum(j.train_flops + j.eval_flops for j in self.jobs)

    @property
    def hours(self) -> float:
        return sum(j.hours or 0.0 for j in self.jobs)

    @property
    def fits_quota(self) -> bool:
        return self.quota_used <= self.quota_hours

    def drivers(self) -> list[dict[str, Any]]:
        """Per job group (experiment and task set, over models and seeds): jobs, hours,
        share of the total, and the share of its compute that is validation; costliest
        first."""
        groups: dict[str, dict[str, Any]] = {}
        for j in self.jobs:
            if j.hours is None:
                continue
            g = groups.setdefault(j.group or j.label, {"group": j.group or j.label, "jobs": 0,
                                                      "hours": 0.0, "flops": 0.0,
                                                      "validation_flops": 0.0})
            g["jobs"] += 1
            g["hours"] += j.hours
            g["flops"] += j.train_flops + j.eval_flops
            g["validation_flops"] += j.validation_flops
        total = self.hours or 1.0
        out = []
        for g in sorted(groups.values(), key=lambda g: -g["hours"]):
            out.append({"group": g["group"], "jobs": g["jobs"], "hours": g["hours"],
                        "share": g["hours"] / total,
                        "validation_share": g["validation_flops"] / g["flops"] if g["flops"]
                        else 0.0})
        return out

    @property
    def validation_share(self) -> float:
        flops = self.flops
        return sum(j.validation_flops for j in self.jobs) / flops if flops else 0.0


# Devices a usual session of each kind has (Kaggle: "GPU T4 x2" sessions, docs/kaggle.md runs
# one worker per GPU; its P100 sessions have one); the quota counts session time.
DEVICES_PER_SESSION = {"t4": 2, "p100": 1, "a100": 1, "h100": 1, "cpu": 1}


def estimate(jobs: Iterable[JobSize], gpu: str = "t4", bench: Mapping[str, Any] | None = None,
             quota_hours: float = 30.0, startup_s: float | None = None,
             devices_per_session: int | None = None) -> Estimate:
    tp = throughput(gpu, bench)
    start = tp.device.startup_s if startup_s is None else float(startup_s)
    per_session = DEVICES_PER_SESSION.get(gpu.lower(), 1) if devices_per_session is None \
        else int(devices_per_session)
    if per_session < 1:
        raise ValueError(f"devices per session must be >= 1, got {per_session}")
    out = Estimate(gpu, tp.flops_per_s, tp.source, start, float(quota_hours),
                   devices_per_session=per_session)
    for j in jobs:
        if j.skipped:
            out.skipped.append(j)
            shape = model_shape(j.model)
            if shape is not None:
                out.skipped_hours += ((train_flops_per_token(shape, j.seq_len) * j.train_tokens
                                       * j.train_padding
                                       + eval_flops_per_token(shape, j.seq_len) * j.eval_tokens)
                                      / tp.flops_per_s + start) / 3600
            continue
        shape = model_shape(j.model)
        if shape is None:
            if j.model not in out.unknown_models:
                out.unknown_models.append(j.model)
            out.jobs.append(JobEstimate(j.job_id, j.label, j.model, None, int(j.train_tokens),
                                        int(j.eval_tokens), math.nan, math.nan, None))
            continue
        tf = train_flops_per_token(shape, j.seq_len) * j.train_tokens * j.train_padding
        ef = eval_flops_per_token(shape, j.seq_len) * j.eval_tokens
        hours = ((tf + ef) / tp.flops_per_s + start) / 3600
        out.jobs.append(JobEstimate(j.job_id, j.label, j.model, shape.params,
                                    int(j.train_tokens), int(j.eval_tokens), tf, ef, hours,
                                    eval_flops_per_token(shape, j.seq_len)
                                    * j.validation_tokens, j.group))
    return out


def _num(x: float) -> str:
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6),
                        ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _hours(h: float | None) -> str:
    if h is None:
        return "?"
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.2f} h"


ASSUMES = (  # one string
    "This is an ESTIMATE and an UPPER BOUND.  It assumes: every job runs its whole planned "
    "budget (no early stopping); a token-controlled job trains to its projected target or to "
    "token_controlled_max_epochs passes, whichever is fewer tokens (its cap); validation on "
    "max_validation_examples where a task has one; token counts from data/TOKEN_LENGTHS.json (the "
    "demo encoder's tokenizer); FLOPs per real token 6P + 12LHS for training and 2P + 4LHS "
    "for evaluation (P non-embedding parameters, L layers, H hidden, S mean tokens per "
    "example), training counted on real tokens plus the padding of the engine's "
    "length-grouped batches; the throughput stated above; a fixed start-up per job; one "
    "job per device at a time, a session's devices kept busy together (quota hours = device-hours / devices "
    "per session); no retries, no time lost to preemption or queueing.")


def render_estimate(est: Estimate, per_job: bool = True, max_rows: int | None = None) -> str:
    lines = [(f"compute estimate on {DEVICES[est.device].name}: "
              f"{_num(est.throughput_flops)}FLOP/s effective ({est.throughput_source}); "
              f"start-up {est.startup_s:g} s per job")]
    if per_job:
        lines.append(f"{'job':<14}{'model':<14}{'params':>8}{'train tok':>11}{'eval tok':>10}"
                     f"{'FLOPs':>9}{'time':>11}  what")
        shown = est.jobs if max_rows is None else est.jobs[:max_rows]
        for j in shown:
            flops = j.train_flops + j.eval_flops
            lines.append(f"{j.job_id:<14}{j.model[:13]:<14}"
                         f"{_num(j.params) if j.params else '?':>8}{_num(j.train_tokens):>11}"
                         f"{_num(j.eval_tokens):>10}"
                         f"{_num(flops) if not math.isnan(flops) else '?':>9}{_hours(j.hours):>11}"
                         f"  {j.label}")
        if len(shown) < len(est.jobs):
            lines.append(f"... {len(est.jobs) - len(shown)} more jobs (--json lists all)")
    lines.append(f"total: {len(est.jobs)} jobs, {_num(est.train_tokens)} real training tokens, "
                 f"{_num(est.flops)}FLOPs, {est.hours:.2f} device-hours on "
                 f"{DEVICES[est.device].name} (an upper bound; validation "
                 f"{est.validation_share:.0%} of the FLOPs)")
    lines.extend(_skipped_lines(est))
    lines.extend(_driver_lines(est))
    if est.device != "cpu":
        verdict = "fits within" if est.fits_quota else "does NOT fit"
        n = est.devices_per_session
        lines.append(f"Kaggle weekly GPU quota: {est.hours:.1f} device-hours on sessions of "
                     f"{n} {DEVICES[est.device].name.split()[-1]}{'s' if n > 1 else ''} "
                     f"(--devices-per-session {n}) = {est.quota_used:.1f} quota hours, "
                     f"{verdict} {est.quota_hours:g} h"
                     + ("" if est.fits_quota else
                        f" (about {math.ceil(est.quota_used / est.quota_hours)} weeks of "
                        "quota)"))
    if est.unknown_models:
        lines.append(f"not estimated (unknown model shape; give a local folder with config.json "
                     f"or add it to MODEL_SHAPES): {', '.join(est.unknown_models)}")
    lines.append(ASSUMES)
    return "\n".join(lines)


def _skipped_lines(est: Estimate) -> list[str]:
    if not est.skipped:
        return []
    return [f"not counted: {len(est.skipped)} token-controlled jobs whose projected target "
            f"needs more passes than their epoch cap (unreachable_parity = \"skip\": recorded "
            f"as not run once their reference has finished). Their targets are projected from "
            f"references that run their whole budget; a reference that stops early lowers "
            f"them, and a job whose measured target fits its cap runs: at most "
            f"+{est.skipped_hours:.1f} device-hours more."]


def _driver_lines(est: Estimate, top: int = 8) -> list[str]:
    drivers = est.drivers()
    if not drivers:
        return []
    lines = [f"cost drivers (job groups over models and seeds, costliest first; "
             f"top {min(top, len(drivers))} of {len(drivers)}):",
             f"  {'hours':>8} {'share':>6} {'valid.':>6} {'jobs':>5}  group"]
    for d in drivers[:top]:
        lines.append(f"  {d['hours']:>8.2f} {d['share']:>6.1%} {d['validation_share']:>6.1%} "
                     f"{d['jobs']:>5}  {d['group']}")
    return lines


def estimate_as_json(est: Estimate) -> dict:
    def clean(x):
        return None if isinstance(x, float) and math.isnan(x) else x
    return {"device": est.device, "device_name": DEVICES[est.device].name,
            "throughput_flops": est.throughput_flops, "throughput_source": est.throughput_source,
            "startup_s": est.startup_s, "quota_hours": est.quota_hours,
            "total": {"jobs": len(est.jobs), "train_tokens": est.train_tokens,
                      "flops": est.flops, "hours": est.hours, "fits_quota": est.fits_quota,
                      "devices_per_session": est.devices_per_session,
                      "quota_hours_used": est.quota_used,
                      "validation_share": est.validation_share, "upper_bound": True},
            "drivers": est.drivers(),
            "skipped": {"jobs": len(est.skipped), "hours_at_cap": est.skipped_hours,
                        "job_ids": [j.job_id for j in est.skipped],
                        "reasons": {j.job_id: j.skipped for j in est.skipped}},
            "unknown_models": est.unknown_models, "assumes": ASSUMES,
            "jobs": [{k: clean(v) for k, v in asdict(j).items()} for j in est.jobs]}


# ------------------------------------------------------------------- from a plan (lazy import)
def text_control_ids(plan) -> set[str]:
    """Job ids of the plan's text-matched control jobs (runner.study.design)."""
    from runner.study.design import is_text_control
    return {j.job_id for j in plan.jobs if is_text_control(j)}


def job_sizes(plan, lengths=None) -> list[JobSize]:
    """JobSize per job of a ``Plan`` from the design check's token projections (the plan's
    data_dir/TOKEN_LENGTHS.json); jobs whose tasks have no token counts are left out."""
    from runner.study import design
    from runner.study.strategies import STRATEGIES
    if lengths is None:
        from runner.data import token_lengths
        hist = token_lengths.read(plan.data_dir)
        if hist is None:
            raise FileNotFoundError(f"no token counts in {plan.data_dir}: build them with "
                                    f"`python -m runner token-lengths {plan.data_dir}`")
        lengths = design.Lengths(hist)
    targets = {t.job_id: t for t in design.token_controlled(plan, lengths,
                                                            design.Results(None))}
    out, ids = [], plan.by_id()
    pads = Padding(lengths.hist)
    for job in plan.jobs:
        if not all(lengths.has(t) for t in job.tasks):
            continue
        cfg = job.settings
        text = job.job_id in targets and targets[job.job_id].control == "text"
        skipped = None
        if text:
            # a text control replays its multi-task job: every task's tokens through the
            # encoder (the others' as masked-LM text), so it costs what that job costs
            per_task = design.projected_tokens(ids[job.depends_on[0]], lengths)
        elif job.job_id in targets:
            tc = targets[job.job_id]
            # at most the epoch cap's tokens: the job stops there (runner.ml.train)
            per_task = {tc.task: float(min(tc.target_tokens, tc.epoch_cap * tc.tokens_per_epoch))}
            if not tc.feasible and cfg.unreachable_parity == "skip":
                skipped = (f"parity unreachable: {tc.epochs_needed:g} epochs needed, cap "
                           f"{tc.epoch_cap}")
        else:
            per_task = design.projected_tokens(job, lengths)
        mean = {t: lengths.epoch(job, t)[1] for t in per_task}
        padding = {t: pads.ratio(t, cfg.max_length_for(t), lengths.epoch(job, t)[0],
                                 cfg.batch_size) for t in per_task}
        examples = sum(per_task[t] / mean[t] for t in per_task if mean[t])
        steps = examples / cfg.batch_size / cfg.grad_accumulation
        cap = cfg.max_eval_examples
        vcaps = cfg.max_validation_examples or {}
        val = test = 0.0
        for t in job.tasks:
            length = cfg.max_length_for(t)
            for split in ("validation", "test"):
                n, toks, _ = lengths.stats(t, split, length) if split in lengths.hist[t] \
                    else (0, 0, 0)
                used_n = min(n, cap) if cap else n
                if split == "validation" and vcaps.get(t):
                    used_n = min(used_n, int(vcaps[t]))
                used = toks * (used_n / n if n else 1.0)
                if split == "validation":
                    val += used
                else:
                    test += used
        evals = max(1, math.ceil(steps / cfg.eval_every))
        tests = 2 if STRATEGIES[job.strategy].token_target else 1   # final and best weights
        train = sum(per_task.values())
        name = job.model if job.model in MODEL_SHAPES else (job.model_name or job.model)
        out.append(JobSize(job.job_id, name, train,
                           evals * val + tests * test,
                           train / examples if examples else 64.0,
                           f"{job.experiment} {job.model} {'+'.join(job.tasks)} seed {job.seed}"
                           + (" (text control: costs what its multi-task job does)"
                              if text else ""),
                           validation_tokens=evals * val, skipped=skipped,
                           group=_group(job, ids),
                           train_padding=(sum(per_task[t] * padding[t] for t in per_task)
                                          / train if train else 1.0)))
    return out


class Padding:
    """Training padding ratios per (task, max_length, examples used, batch size), from the
    token-count histograms: the lengths of ``examples`` drawn without replacement (a fixed
    generator; the engine's own draw is another, of the same distribution), batched by
    runner.study.batch_groups' rule."""

    def __init__(self, hist: Mapping[str, Mapping[str, Mapping[int, int]]]):
        self.hist = hist
        self._cache: dict[tuple, float] = {}

    def ratio(self, task: str, max_length: int, examples: int, batch_size: int) -> float:
        key = (task, max_length, examples, batch_size)
        if key not in self._cache:
            import numpy as np

            from runner.study.batch_groups import padding_ratio

            h = self.hist[task]["train"]
            lengths = np.minimum(np.repeat(np.fromiter((int(n) for n in h), np.int64),
                                           np.fromiter((int(c) for c in h.values()), np.int64)),
                                 max_length)
            if 0 < examples < len(lengths):
                rng = np.random.default_rng(0)
                lengths = lengths[rng.choice(len(lengths), examples, replace=False)]
            self._cache[key] = padding_ratio(lengths, batch_size)
        return self._cache[key]


def _group(job, ids: dict) -> str:
    """A cost driver: the experiment and its task set (token_controlled: its reference's set
    and parity), over models and seeds."""
    ref = ids.get(job.depends_on[0]) if job.depends_on else None
    if ref is not None:
        return f"{job.experiment} ({job.parity or 'total'} parity of {'+'.join(ref.tasks)})"
    return f"{job.experiment} {'+'.join(job.tasks)}"
