"""``python -m runner selfcheck [--device auto|cuda|cpu]``: the first command to run on a new
machine (a Kaggle T4 or 2xT4, a lab A100/H100), before a study spends its hours there.

Everything is built here, without the hub: random-weight encoders of the MiniLM (6 layers,
hidden 384) and BERT-base (12 layers, hidden 768) shapes with a WordPiece tokenizer trained on
the prepared data (scores mean nothing; speed and mechanics do).  Then, in order:

1. **environment** -- the device torch sees, the GPUs (count, name, compute capability,
   hardware bf16), the training precision the card gets (bf16 on A100/H100; fp16 with loss
   scaling on T4/P100; fp32 on CPU) and whether ``torch.compile`` would run;
2. **jobs** -- a tiny study (single-task, multi-task and token-controlled jobs on BC2GM and
   GAD) run with ``python -m runner run --workers auto``: one worker per visible GPU, each
   with its own ``CUDA_VISIBLE_DEVICES``; every job must finish with finite losses at the
   card's precision;
3. **kill and resume** -- the same study run again in one process, SIGKILLed right after the
   first checkpoint of a job appears, and run again: every job's result must equal the
   uninterrupted run's (counts exactly; metrics exactly on CPU, within ``CUDA_METRIC_TOL`` on
   a GPU, whose kernels are not bit-reproducible run to run);
4. **throughput** -- real training tokens/s of each model shape in the engine (steady state:
   from the end of the first optimizer step to the end of the last, device synchronised),
   model FLOP/s by ``runner.observe.estimate``'s formula, MFU against the measured matmul peak
   and, for a known GPU, the datasheet peak; written as ``<out>/throughput.json`` in the format
   ``python -m runner plan MANIFEST --estimate --throughput FILE`` reads, and read back so.

``<out>/selfcheck.json`` holds every check and figure; the model folders are removed at the end
(``--keep-models`` keeps them).  Exit 0: every check passed; 1: one failed (the table says
which; logs under ``<out>/logs/``); 2: bad input.  CPU mode (``--device cpu``) runs the same
checks with a 2-layer job model and a few throughput steps, so CI runs this command itself.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mtl_contract.schema import RESULT_FILE
from runner.errors import InputError
from runner.jobapi import JobContext
from runner.ml.lora import encoder_lora_shape
from runner.ml.model import save_random_encoder
from runner.ml.runtime import (
    compile_problem,
    device_name,
    gpu_report,
    matmul_peak_flops,
    pick_device,
    synchronize,
    torch_version,
)
from runner.ml.train import autocast_dtype, loss_scaling
from runner.observe import estimate as est
from runner.orchestrate.workers import visible_gpus
from runner.recipes.train_job import run_job
from runner.study.manifest import load_manifest
from runner.study.plan import build_plan

SHAPES = {   # BertConfig fields; vocab_size 30522 = the uncased BERT / MiniLM vocabulary
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 128, "vocab_size": 0, "max_position_embeddings": 512},
    "minilm": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
               "intermediate_size": 1536, "vocab_size": 30522, "max_position_embeddings": 512},
    "bert-base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                  "intermediate_size": 3072, "vocab_size": 30522,
                  "max_position_embeddings": 512},
}
TASKS = ("bc2gm", "gad")           # one NER and one classification task of data/
THROUGHPUT_TASK = "bc2gm"
CUDA_METRIC_TOL = 0.02             # GPU runs are not bit-reproducible (atomics, autotuning)
KNOWN_GPUS = (("H100", "h100"), ("A100", "a100"), ("T4", "t4"), ("P100", "p100"))
RUN_TIMEOUT_S = 900.0              # one `python -m runner run` of the tiny study


@dataclass
class Settings:
    job_model: str        # the shape of the jobs' encoder
    models: list[str]     # the shapes whose throughput is measured
    steps: int            # optimizer steps per throughput run
    batch_size: int
    max_length: int
    job_examples: int     # training examples per task in the tiny study
    job_batch_size: int
    peak_seconds: float   # measuring the matmul peak


DEFAULTS = {
    "cuda": Settings("minilm", ["minilm", "bert-base"], steps=60, batch_size=32,
                     max_length=128, job_examples=256, job_batch_size=16, peak_seconds=2.0),
    # CPU mode: CI's budget (2 cores); the same checks on less data
    "cpu": Settings("tiny", ["minilm", "bert-base"], steps=3, batch_size=2, max_length=32,
                    job_examples=16, job_batch_size=4, peak_seconds=0.3),
}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class SelfCheck:
    out: Path
    data_dir: Path
    device: str
    settings: Settings
    precision: str
    checks: list[Check] = field(default_factory=list)
    environment: dict = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, bool(ok), detail))
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
        return bool(ok)


# --------------------------------------------------------------------------------- entry
def run(out: str | Path = "selfcheck", data_dir: str | Path = "data", device: str = "auto",
        precision: str = "auto", models: list[str] | None = None, steps: int | None = None,
        job_model: str | None = None, keep_models: bool = False) -> int:
    """The whole check (the module docstring); returns the exit code."""
    where = pick_device()
    if device == "cuda" and where.type != "cuda":
        raise InputError(None, "no CUDA GPU is visible to torch (torch.cuda.is_available() "
                         "is False); use --device cpu for the CPU check", where="--device")
    settings = DEFAULTS[where.type]
    settings = Settings(**{**asdict(settings), **({"models": models} if models else {}),
                           **({"steps": steps} if steps else {}),
                           **({"job_model": job_model} if job_model else {})})
    unknown = [m for m in [*settings.models, settings.job_model] if m not in SHAPES]
    if unknown:
        raise InputError(None, f"unknown model shape {unknown[0]!r}; choose from "
                         f"{', '.join(SHAPES)}", where="--models")
    if settings.steps < 2:
        raise InputError(None, "at least 2 steps (the steady state starts after the first)",
                         where="--steps")
    out = _fresh_output(Path(out))
    data_dir = Path(data_dir)
    sc = SelfCheck(out, data_dir, where.type, settings, precision)
    started = time.monotonic()
    print(f"selfcheck on {where.type}: output in {out}", flush=True)
    try:
        _environment(sc, where)
        model_dirs = _build_models(sc)
        _jobs_and_resume(sc, model_dirs[settings.job_model])
        _throughput(sc, where, model_dirs)
    finally:
        if not keep_models:
            shutil.rmtree(out / "models", ignore_errors=True)
    failed = [c.name for c in sc.checks if not c.ok]
    summary = {"ok": not failed, "failed": failed, "device": sc.device,
               "environment": sc.environment, "settings": asdict(settings),
               "checks": [asdict(c) for c in sc.checks],
               "seconds": round(time.monotonic() - started, 1)}
    (out / "selfcheck.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"selfcheck: {len(sc.checks) - len(failed)} of {len(sc.checks)} checks passed in "
          f"{summary['seconds']:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else "")
          + f"; {out / 'selfcheck.json'}", flush=True)
    return 1 if failed else 0


def _fresh_output(out: Path) -> Path:
    """``out`` empty, or an earlier selfcheck's output (replaced); anything else is refused,
    so nothing of the user's is deleted."""
    if out.exists():
        if not out.is_dir():
            raise InputError(str(out), "exists and is not a folder", where="--out")
        if any(out.iterdir()) and not (out / "selfcheck.json").exists() \
                and not (out / "selfcheck.toml").exists():
            raise InputError(str(out), "is not empty and holds no earlier selfcheck "
                             "(selfcheck.json); choose another --out", where="--out")
        for name in ("models", "reference", "resumed", "logs", "throughput"):
            shutil.rmtree(out / name, ignore_errors=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    return out.resolve()


# ------------------------------------------------------------------------ 1. environment
def _expected_precision(precision: str, device) -> str:
    dtype = autocast_dtype(precision, device)
    return str(dtype).replace("torch.", "") if dtype is not None else "float32"


def _environment(sc: SelfCheck, device) -> None:
    gpus = gpu_report()
    dtype = autocast_dtype(sc.precision, device)
    sc.environment = {"device": device.type, "torch": torch_version(), "gpus": gpus,
                      "precision": _expected_precision(sc.precision, device),
                      "loss_scaling": loss_scaling(dtype),
                      "compile": compile_problem(device) or "available"}
    if gpus:
        detail = (f"{gpus['count']} x {gpus['name']} (compute capability {gpus['capability']}, "
                  f"{gpus['memory_gib']} GiB, CUDA {gpus['cuda']}); training precision "
                  f"{sc.environment['precision']}"
                  f"{' with loss scaling' if sc.environment['loss_scaling'] else ''}; "
                  f"torch.compile: {sc.environment['compile']}")
    else:
        detail = f"CPU (no CUDA GPU visible); torch {torch_version()}; fp32"
    sc.check("environment", True, detail)


# ------------------------------------------------------------------------------ 2. models
def _corpus(data_dir: Path) -> list[str]:
    """The training text of TASKS (the tokenizer's corpus)."""
    from runner.data.splits import load_split
    from runner.data.tasks import get_task

    lines = []
    for task in TASKS:
        spec, df = get_task(task), load_split(data_dir, task, "train")
        for field_name in spec.text_fields:
            for value in df[field_name]:
                lines.append(value if isinstance(value, str) else " ".join(map(str, value)))
    return lines


def _build_models(sc: SelfCheck) -> dict[str, str]:
    t0 = time.monotonic()
    corpus = _corpus(sc.data_dir)
    names = dict.fromkeys([sc.settings.job_model, *sc.settings.models])
    dirs = {name: save_random_encoder(sc.out / "models" / name, SHAPES[name], corpus)
            for name in names}
    sc.check("models", True, f"random-weight {', '.join(names)} encoders built in "
             f"{time.monotonic() - t0:.1f} s (no hub access)")
    return dirs


# -------------------------------------------------------------------- 3. jobs and resume
def _manifest_text(sc: SelfCheck, model_dir: str) -> str:
    s = sc.settings
    examples = ", ".join(f"{t} = {s.job_examples}" for t in TASKS)
    tasks = ", ".join(f'"{t}"' for t in TASKS)
    return f"""# written by `python -m runner selfcheck`: a tiny study of every strategy
[study]
name = "selfcheck"
seeds = [1]

[models]
selfcheck = "{model_dir}"

[defaults]
max_length = {s.max_length}
batch_size = {s.job_batch_size}
learning_rate = 1e-3
warmup_steps = 2
max_epochs = 1
eval_every = 2
patience = 100
max_train_examples = {{{examples}}}
max_eval_examples = {max(8, s.job_examples // 4)}
checkpoint_every_s = 0.001
precision = "{sc.precision}"

[[experiments]]
name = "single"
strategy = "single_task"
models = ["selfcheck"]
tasks = [{tasks}]

[[experiments]]
name = "multi"
strategy = "multi_task"
models = ["selfcheck"]
task_sets = [[{tasks}]]

[[experiments]]
name = "token_controlled"
strategy = "token_controlled"
reference = "multi"
parity = "per_task"
"""


def _runner(sc: SelfCheck, manifest: Path, results: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "runner", "run", str(manifest), "--results-dir",
            str(sc.out / results), "--data-dir", str(sc.data_dir), *extra]


def _start(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **(env or {})})


def _finish(proc: subprocess.Popen, timeout: float = RUN_TIMEOUT_S) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return -9


def _tail(log: Path, n: int = 15) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return "\n".join("      " + ln for ln in lines[-n:])


def _results(folder: Path, plan) -> dict[str, dict]:
    out = {}
    for job in plan.jobs:
        path = folder / job.job_id / RESULT_FILE
        if path.exists():
            out[job.job_id] = json.loads(path.read_text())
    return out


def _jobs_and_resume(sc: SelfCheck, model_dir: str) -> None:
    manifest = sc.out / "selfcheck.toml"
    manifest.write_text(_manifest_text(sc, model_dir))
    plan = build_plan(load_manifest(manifest), sc.data_dir, require_data=True,
                      encoder_shape=encoder_lora_shape)
    gpus = sc.environment["gpus"].get("count", 0)

    # --workers auto: one worker per visible GPU (CUDA_VISIBLE_DEVICES per child)
    t0 = time.monotonic()
    log = sc.out / "logs" / "reference.log"
    code = _finish(_start(_runner(sc, manifest, "reference", "--workers", "auto"), log))
    reference = _results(sc.out / "reference", plan)
    workers = sorted(p.stem for p in (sc.out / "reference/ledger/workers").glob("*.log"))
    expected_workers = gpus if gpus > 1 else 0   # one GPU or none: this process, no child
    kinds = sorted({r["experiment_type"] for r in reference.values()})
    finite = all(math.isfinite(r["train_results"]["train_loss"]) for r in reference.values())
    precisions = {r["provenance"]["precision"] for r in reference.values()}
    ok = code == 0 and len(reference) == len(plan.jobs) and finite
    sc.check("jobs", ok, f"{len(reference)} of {len(plan.jobs)} jobs done ({', '.join(kinds)}), "
             f"exit {code}, finite losses: {finite}, in {time.monotonic() - t0:.0f} s"
             + ("" if ok else f"; log {log}:\n{_tail(log)}"))
    sc.check("precision", precisions == {sc.environment["precision"]},
             f"results record {', '.join(sorted(precisions)) or 'nothing'}; the card's "
             f"precision is {sc.environment['precision']}")
    sc.check("workers", len(workers) == expected_workers,
             f"--workers auto started {len(workers) or 'no'} worker process(es) "
             f"({', '.join(workers) or 'ran in this process'}) for {gpus} visible GPU(s)")
    if not ok:
        return
    _kill_and_resume(sc, manifest, plan, reference)


def _kill_and_resume(sc: SelfCheck, manifest: Path, plan, reference: dict) -> None:
    folder = sc.out / "resumed"
    log = sc.out / "logs" / "resumed.log"
    # one process on one GPU (the first visible), as a single worker runs
    env = {"CUDA_VISIBLE_DEVICES": visible_gpus()[0]} if sc.device == "cuda" else {}
    victim = _start(_runner(sc, manifest, "resumed"), log, env)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not list(folder.glob("*/checkpoints/checkpoint-*")):
        if victim.poll() is not None or time.monotonic() > deadline:
            _finish(victim, 1)
            sc.check("kill and resume", False, f"no checkpoint appeared before the run "
                     f"ended (exit {victim.returncode}); log {log}:\n{_tail(log)}")
            return
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    killed = sorted(p.parent.parent.name for p in folder.glob("*/checkpoints/checkpoint-*")
                    if not (p.parent.parent / RESULT_FILE).exists())
    code = _finish(_start(_runner(sc, manifest, "resumed"), log, env))
    resumed = _results(folder, plan)
    problems = []
    worst = 0.0
    for job_id, ref in reference.items():
        got = resumed.get(job_id)
        if got is None:
            problems.append(f"{job_id}: no result")
            continue
        for key in ("token_count", "tokens_per_task"):
            if got[key] != ref[key]:
                problems.append(f"{job_id}: {key} {got[key]} != {ref[key]}")
        if got["train_results"]["steps"] != ref["train_results"]["steps"]:
            problems.append(f"{job_id}: steps differ")
        diff = _max_metric_difference(ref, got)
        worst = max(worst, diff)
        if diff > (CUDA_METRIC_TOL if sc.device == "cuda" else 0.0):
            problems.append(f"{job_id}: metrics differ by up to {diff:.3g}")
    sc.check("kill and resume", code == 0 and not problems and bool(killed),
             f"SIGKILL after the first checkpoint (mid-job: {', '.join(killed) or 'none'}); "
             f"resumed run exit {code}; {len(resumed)} results vs the uninterrupted run: "
             + ("equal" if worst == 0 else f"metrics within {worst:.2g}")
             + (f"; {'; '.join(problems[:5])}" if problems else ""))


def _max_metric_difference(a: dict, b: dict) -> float:
    """Largest absolute difference of the test metrics and validation scores of two results."""
    pairs = [(a["test_results"].get(k), b["test_results"].get(k)) for k in a["test_results"]]
    pairs += [(x["score"], y["score"]) for x, y in zip(a["validation_history"],
                                                       b["validation_history"])]
    if len(a["validation_history"]) != len(b["validation_history"]):
        return math.inf
    worst = 0.0
    for x, y in pairs:
        if x is None or y is None:
            if x is not y:
                return math.inf
            continue
        if not (math.isfinite(x) and math.isfinite(y)):
            if not (math.isnan(x) and math.isnan(y)) and x != y:
                return math.inf
            continue
        worst = max(worst, abs(x - y))
    return worst


# ---------------------------------------------------------------------------- 4. throughput
class _StepClock:
    """(seconds, real tokens so far) at the end of every optimizer step, device synchronised."""

    def __init__(self, device):
        self.device, self.marks = device, []

    def __call__(self, progress: dict) -> None:
        if progress.get("phase", "train") == "train":
            synchronize(self.device)
            self.marks.append((time.perf_counter(), int(progress["tokens"])))

    def tokens_per_s(self) -> float:
        (t0, k0), (t1, k1) = self.marks[0], self.marks[-1]
        return (k1 - k0) / (t1 - t0)


def _throughput_manifest(sc: SelfCheck, name: str, model_dir: str) -> str:
    s = sc.settings
    return f"""# written by `python -m runner selfcheck`: one throughput run of {name}
[study]
name = "throughput-{name}"
seeds = [1]

[models]
{name.replace('-', '_')} = "{model_dir}"

[defaults]
max_length = {s.max_length}
batch_size = {s.batch_size}
max_steps = {s.steps}
eval_every = {s.steps * 10}
max_train_examples = {{{THROUGHPUT_TASK} = {s.batch_size * (s.steps + 2)}}}
max_eval_examples = 8
checkpoint_every_s = 1000000.0
precision = "{sc.precision}"

[[experiments]]
name = "speed"
strategy = "single_task"
models = ["{name.replace('-', '_')}"]
tasks = ["{THROUGHPUT_TASK}"]
"""


def _gpu_kind(name: str) -> str | None:
    return next((kind for sub, kind in KNOWN_GPUS if sub in name.upper()), None)


def _throughput(sc: SelfCheck, device, model_dirs: dict[str, str]) -> None:
    gpus = sc.environment["gpus"]
    dtype = autocast_dtype(sc.precision, device)
    # the device as runner.observe.estimate matches it: a GPU's name, or "CPU ..."
    if gpus:
        where, kind = f"{gpus['name']} (CUDA {gpus['cuda']})", _gpu_kind(gpus["name"])
    else:
        where, kind = "CPU " + device_name(device).removeprefix("cpu "), "cpu"
    peak = matmul_peak_flops(device, dtype, sc.settings.peak_seconds)
    sheet = est.DEVICES[kind].peak if kind else None
    bench = {"device": where, "precision": sc.environment["precision"],
             "peak_flops_measured": peak, "peak_flops_datasheet": sheet, "models": {},
             "source": "python -m runner selfcheck"}
    folder = sc.out / "throughput"
    for name in sc.settings.models:
        manifest = folder / f"{name}.toml"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(_throughput_manifest(sc, name, model_dirs[name]))
        (job,) = build_plan(load_manifest(manifest), sc.data_dir, require_data=True,
                            encoder_shape=encoder_lora_shape).jobs
        clock = _StepClock(device)
        job_dir = folder / name
        job_dir.mkdir(parents=True, exist_ok=True)
        result = run_job(job, JobContext(job_dir=job_dir, data_dir=sc.data_dir,
                                         heartbeat=clock))
        shape = est.model_shape(model_dirs[name])
        examples = result["train_results"]["epochs_trained"] * \
            result["dataset_stats"][THROUGHPUT_TASK]["train_samples"]
        mean_len = result["token_count"] / max(1.0, examples)
        tokens_per_s = clock.tokens_per_s()
        flops_per_token = est.train_flops_per_token(shape, mean_len)
        row = {"tokens_per_s": tokens_per_s, "real_tokens": result["token_count"],
               "steps": result["train_results"]["steps"], "mean_len": mean_len,
               "flops_per_token": flops_per_token,
               "model_flops_per_s": flops_per_token * tokens_per_s,
               "mfu_measured_peak": flops_per_token * tokens_per_s / peak,
               "mfu_datasheet": flops_per_token * tokens_per_s / sheet if sheet else None,
               "precision": result["provenance"]["precision"]}
        bench["models"][name] = {"best": {"engine": row}, "layers": shape.layers,
                                 "hidden": shape.hidden, "batch_size": sc.settings.batch_size}
        shutil.rmtree(job_dir / "checkpoints", ignore_errors=True)
        sheet_text = f", {row['mfu_datasheet']:.1%} of the datasheet peak" if sheet else ""
        sc.check(f"throughput {name}", tokens_per_s > 0 and math.isfinite(tokens_per_s),
                 f"{tokens_per_s:,.0f} real training tokens/s ({shape.layers} layers, hidden "
                 f"{shape.hidden}, batch {sc.settings.batch_size}, {row['precision']}); "
                 f"MFU {row['mfu_measured_peak']:.1%} of the measured matmul peak "
                 f"({peak / 1e12:.3g} TFLOP/s){sheet_text}")
    path = sc.out / "throughput.json"
    path.write_text(json.dumps(bench, indent=1) + "\n")
    if kind is None:   # a GPU --estimate has no datasheet entry for (--gpu's choices)
        sc.check("throughput file", bool(est.read_benchmark(path)["models"]),
                 f"{path} written; {where} is not among `plan --estimate --gpu`'s devices "
                 f"({', '.join(est.DEVICES)}), so the estimate cannot use it for this GPU")
        return
    read = est.throughput(kind, est.read_benchmark(path))
    sc.check("throughput file", read.source.startswith("measured"),
             f"`python -m runner plan MANIFEST --estimate --gpu {kind} --throughput {path}` "
             f"uses {read.flops_per_s / 1e9:.3g} GFLOP/s ({read.source})")
