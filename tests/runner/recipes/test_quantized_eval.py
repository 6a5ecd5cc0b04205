"""RQ3 ``python -m runner evaluate`` and RQ4 ``python -m runner similarity`` on a tiny BERT
(hidden 32, 2 layers, WordPiece trained on the fly): a tiny study of four single-task jobs
(NER, classification, multi-label, regression under the real task names, synthetic data) is
trained through the executor and the engine, then evaluated at fp32 and int8 on CPU."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from runner.cli import main as runner_main
from runner.cli.run import training_job
from runner.cli.similarity import similarity_step
from runner.data.tasks import get_task
from runner.errors import InputError
from runner.recipes.quantized_eval import evaluate_manifest, parse_levels
from runner.study.manifest import has_pair_experiment, load_manifest, parse_manifest
from tests.helpers import build_tiny_bert

FILLER = ["the", "of", "a", "in", "cells", "protein", "was", "were", "expression", "binding",
          "human", "cell", "and", "to", "tumor", "growth"]
GENES = ["p53", "brca1", "il2", "tnf", "egfr", "kras"]
TASKS = ("bc2gm", "gad", "hoc", "biosses")


def frames(n: int, seed: int) -> dict[str, pd.DataFrame]:
    """Learnable synthetic rows in each real task's prepared columns."""
    rng = random.Random(seed)
    hallmarks = get_task("hoc").labels
    rows = {t: [] for t in TASKS}
    for i in range(n):
        words, tags = [], []
        for _ in range(rng.randint(3, 12)):
            if rng.random() < 0.2:
                words.append(rng.choice(GENES)); tags.append("B")
                if rng.random() < 0.5:
                    words.append("kinase"); tags.append("I")
            else:
                words.append(rng.choice(FILLER)); tags.append("O")
        text = " ".join(words)
        genes = sum(t == "B" for t in tags)
        rows["bc2gm"].append({"id": f"s{i}", "tokens": words, "tags": tags})
        rows["gad"].append({"id": f"g{i}", "document_id": f"d{i}", "text": text,
                            "label": "1" if genes else "0"})
        rows["hoc"].append({"id": f"h{i}", "document_id": f"a{i // 2}", "text": text,
                            "labels": [hallmarks[0]] if genes else []})
        rows["biosses"].append({"id": f"b{i}", "text_1": text, "text_2": " ".join(words[:3]),
                                "label": float(min(genes, 4))})
    return {t: pd.DataFrame(r) for t, r in rows.items()}


def build_tiny_model(path: Path) -> Path:
    return build_tiny_bert(path, (" ".join(r) for r in frames(200, 9)["bc2gm"]["tokens"]))


def manifest_text(model: Path, name: str = "tiny_rq3") -> str:
    return f"""
[study]
name = "{name}"
seeds = [1]

[models]
tiny = "{model}"

[defaults]
max_length = 64
learning_rate = 3e-3
warmup_steps = 2
batch_size = 8
max_epochs = 2
eval_every = 5
max_train_examples = 48
max_eval_examples = 24        # the evaluation must use the same 24 test rows
checkpoint_every_s = 300.0

[[experiments]]
name = "single"
strategy = "single_task"
models = ["tiny"]
tasks = {json.dumps(list(TASKS))}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished tiny study: (manifest path, results dir, data dir, plan)."""
    from runner.orchestrate import local as executor
    from runner.study.plan import build_plan

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("rq3")
    model = build_tiny_model(root / "tiny_bert")
    data = root / "data"
    for split, n, seed in (("train", 60, 1), ("validation", 30, 2), ("test", 30, 3)):
        for task, df in frames(n, seed).items():
            (data / task).mkdir(parents=True, exist_ok=True)
            df.to_parquet(data / task / f"{split}.parquet", index=False)
    manifest = root / "tiny_rq3.toml"
    manifest.write_text(manifest_text(model))
    results = root / "results"
    plan = build_plan(load_manifest(manifest), data)
    assert executor.run_plan(plan, results, job_fn=training_job) == 0
    return manifest, results, data, plan


def evaluation(results: Path, job_id: str, level: str) -> dict:
    return json.loads((results / job_id / "evaluation" / f"{level}.json").read_text())


# bitsandbytes 0.50's CPU kernel on AVX-512 BF16 CPUs, given a layer narrower than a block:
KERNEL_ERROR = "shape '[32, 0]' is invalid for input of size 16"


def fake_bitsandbytes(fail_below: int = 0, built: list | None = None):
    """A stand-in for bitsandbytes (its ``nn.Linear4bit`` / ``nn.Params4bit``), so both branches
    run on any CPU: the weights are rounded to bf16 (not NF4: the runner only swaps the layers
    and moves them), and a layer whose input is narrower than ``fail_below`` raises the real
    kernel's error when it runs.  ``built`` collects each layer's (in, out) features."""
    import types

    class Linear4bit(torch.nn.Module):
        def __init__(self, n_in, n_out, bias=True, compute_dtype=None, quant_type="fp4"):
            super().__init__()
            assert quant_type == "nf4" and compute_dtype is torch.bfloat16
            self.in_features, self.out_features = n_in, n_out
            self.weight, self.bias = None, None
            if built is not None:
                built.append((n_in, n_out))

        def forward(self, x):
            if self.in_features < fail_below:
                raise RuntimeError(KERNEL_ERROR + "\n(second line of the message)")
            w = self.weight.to(torch.bfloat16).float()
            return torch.nn.functional.linear(x, w, self.bias)

    def params4bit(data, requires_grad=False, quant_type="fp4"):
        return torch.nn.Parameter(data.to(torch.bfloat16), requires_grad=requires_grad)

    return types.SimpleNamespace(nn=types.SimpleNamespace(Linear4bit=Linear4bit,
                                                          Params4bit=params4bit))


@pytest.fixture
def bnb(monkeypatch):
    """Install a fake bitsandbytes (``bnb(fail_below=...)``) into runner.ml.quantize."""
    import runner.ml.quantize as q

    q._nf4_problem.cache_clear()
    monkeypatch.setattr(q, "_cuda_available", lambda: False)

    def install(fail_below=0, version="9.9.9+fake", built=None):
        fake = fake_bitsandbytes(fail_below, built)
        monkeypatch.setattr(q, "_bitsandbytes", lambda: fake)
        monkeypatch.setattr(q, "_bitsandbytes_version", lambda: version)
        q._nf4_problem.cache_clear()
        return fake
    yield install
    q._nf4_problem.cache_clear()


def fresh_copy(results: Path, plan, tmp_path: Path) -> Path:
    """The study's results without any evaluation file."""
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    for job in plan.jobs:
        shutil.rmtree(copy / job.job_id / "evaluation", ignore_errors=True)
    return copy


def test_fp32_and_int8_on_cpu_and_gpu_levels_skipped(study, bnb):
    """fp32 and int8 run on the CPU; fp16 is skipped (no GPU), and nf4, whose kernel cannot take
    the tiny encoder's 32-wide layers (forced here: it depends on the CPU), is skipped with the
    library's message while the other levels still run."""
    manifest, results, data, plan = study
    bnb(fail_below=64)
    lines = []
    summary = evaluate_manifest(manifest, results_dir=results, data_dir=data,
                                levels=("fp32", "fp16", "int8", "nf4"), say=lines.append)
    assert not summary.skipped_jobs and summary.unfinished == 0
    kinds = {"bc2gm": "token", "gad": "multiclass", "hoc": "multilabel", "biosses": None}
    for job in plan.jobs:
        (task,) = job.tasks
        result = json.loads((results / job.job_id / "result.json").read_text())
        docs = {lv: evaluation(results, job.job_id, lv) for lv in ("fp32", "int8")}
        for lv, doc in docs.items():
            assert doc["schema"] == "evaluation/1" and doc["job_id"] == job.job_id
            assert doc["level"] == lv and doc["status"] == "ok" and doc["reason"] is None
            assert doc["device"].startswith("cpu") and doc["batch_size"] == 32
            assert doc["latency_ms_per_example"] > 0 and doc["throughput_examples_per_s"] > 0
            assert doc["throughput_examples_per_s"] == pytest.approx(
                1000.0 / doc["latency_ms_per_example"])
            assert doc["peak_memory_bytes"] >= 0 and doc["size_on_disk_bytes"] > 0
            entry = doc["per_task"][task]
            # the job's own test subset (max_eval_examples = 24 of 30 rows; HoC scores the
            # abstracts of those 24 sentences)
            assert entry["n_test"] == result["per_task"][task]["n_test"]
            assert entry["n_test"] == 24 or task == "hoc"
            assert entry["primary_metric"] == get_task(task).primary_metric
            cal = entry["calibration"]
            if kinds[task] is None:
                assert cal is None and "regression" in entry["calibration_reason"]
            else:
                assert cal["kind"] == kinds[task] and len(cal["bins_before"]) == 15
                assert cal["nll_val_after"] <= cal["nll_val_before"] + 1e-12
                assert 0 <= cal["ece_before"] <= 1 and cal["temperature"] > 0
                assert entry["calibration_reason"] is None
        # fp32 reproduces the job's own test score: same rows, same weights, same batches
        primary = get_task(task).primary_metric
        expected = result["per_task"][task]["metrics"][primary]
        got = docs["fp32"]["per_task"][task]["metrics"][primary]
        assert (got is None and expected is None) or got == pytest.approx(expected, abs=1e-6)
        assert docs["int8"]["size_on_disk_bytes"] < docs["fp32"]["size_on_disk_bytes"]
        doc = evaluation(results, job.job_id, "fp16")
        assert doc["status"] == "skipped" and "CUDA" in doc["reason"]
        assert set(doc) == {"schema", "job_id", "level", "status", "reason", "device",
                            "environment"}
        assert doc["environment"]["device"].startswith("cpu (")
        doc = evaluation(results, job.job_id, "nf4")
        assert doc["status"] == "skipped" and doc["reason"] == (
            "nf4 cannot run on cpu with bitsandbytes 9.9.9+fake (Linear 32->32): RuntimeError: "
            + KERNEL_ERROR)
        assert doc["environment"]["bitsandbytes"] == "9.9.9+fake"
    assert any(" int8: " in line and "ms/example" in line for line in lines), lines
    assert sum(" nf4: skipped (nf4 cannot run on cpu" in line for line in lines) == 4, lines


@pytest.mark.parametrize("level,dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_half_precision_levels_run_end_to_end_where_allowed(study, tmp_path, monkeypatch,
                                                             level, dtype):
    """fp16/bf16 are GPU levels; this machine has none, so the test lets them run on the CPU
    (torch computes both there) to exercise their whole path: the cast copy, float32 logits
    for the metrics and calibration, half the bytes on disk, a score close to fp32's."""
    import runner.ml.quantize as q

    manifest, results, data, plan = study
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    for job in plan.jobs:
        shutil.rmtree(copy / job.job_id / "evaluation", ignore_errors=True)
    monkeypatch.setattr(q, "level_unavailable", lambda lv: None)
    monkeypatch.setattr(q, "level_device", lambda lv: "cpu")
    seen = []
    real_level_model = q.to_level

    floats = {}

    def spy(base, lv):
        model = real_level_model(base, lv)
        seen.append({p.dtype for p in model.parameters()})
        floats[lv] = sum(t.numel() for t in model.state_dict().values()
                         if t.is_floating_point())
        return model
    monkeypatch.setattr(q, "to_level", spy)
    evaluate_manifest(manifest, results_dir=copy, data_dir=data, levels=("fp32", level),
                      say=lambda s: None)
    assert {dtype} in seen and {torch.float32} in seen   # every weight cast, none left fp32
    for job in plan.jobs:
        (task,) = job.tasks
        full, half = (evaluation(copy, job.job_id, lv) for lv in ("fp32", level))
        assert half["status"] == "ok" and half["level"] == level
        # two bytes fewer per floating-point value (less the zip records' 64-byte alignment)
        saved = full["size_on_disk_bytes"] - half["size_on_disk_bytes"]
        assert saved == pytest.approx(2 * floats[level], rel=0.08)
        primary = get_task(task).primary_metric
        a = full["per_task"][task]["metrics"][primary]
        b = half["per_task"][task]["metrics"][primary]
        if get_task(task).kind == "regression":
            # the tiny model's BIOSSES outputs differ in the 3rd-4th digit: bf16 (8-bit
            # mantissa) can round them all to one value, Pearson 0.0 by definition
            assert b is not None and -1.0 <= b <= 1.0
        elif a is not None:
            assert b == pytest.approx(a, abs=0.1)   # rounding the weights, not retraining
        cal = half["per_task"][task]["calibration"]
        if task != "biosses":
            assert cal is not None and 0 <= cal["ece_before"] <= 1, half["per_task"][task]


def test_nf4_quantises_every_encoder_linear_where_bitsandbytes_works(study, tmp_path,
                                                                     monkeypatch, bnb):
    """Where the kernels take the model (forced: a stand-in library that works), every encoder
    Linear becomes a Linear4bit, the heads stay fp32 Linears, the probe quantised one layer of
    each of the encoder's distinct shapes, and the level scores the job's test subset."""
    import runner.ml.quantize as q

    manifest, results, data, plan = study
    copy = fresh_copy(results, plan, tmp_path)
    built = []
    fake = bnb(built=built)
    swapped = []
    real_level_model = q.to_level

    def spy(base, lv):
        model = real_level_model(base, lv)
        if lv == "nf4":
            swapped.append((sum(isinstance(m, fake.nn.Linear4bit) for m in model.modules()),
                            sum(type(m) is torch.nn.Linear for m in model.encoder.modules()),
                            sum(type(m) is torch.nn.Linear for m in model.modules())))
        return model
    monkeypatch.setattr(q, "to_level", spy)
    evaluate_manifest(manifest, results_dir=copy, data_dir=data, levels=("nf4",),
                      say=lambda s: None)
    # hidden 32, intermediate 64: three shapes, probed once (cached), before the 4 jobs' layers
    assert built[:3] == [(32, 32), (32, 64), (64, 32)]
    assert len(built) == 3 + 4 * 12
    for job in plan.jobs:
        (task,) = job.tasks
        doc = evaluation(copy, job.job_id, "nf4")
        assert doc["status"] == "ok", doc
        value = doc["per_task"][task]["metrics"][get_task(task).primary_metric]
        assert value is None or -1.0 <= value <= 1.0
        assert doc["latency_ms_per_example"] > 0 and doc["size_on_disk_bytes"] > 0
    # 2 layers x (query, key, value, attention output, intermediate, output) quantised; no
    # plain Linear left in the encoder; the task heads keep theirs (fp32)
    assert len(swapped) == 4 and all(s[:2] == (12, 0) and s[2] >= 1 for s in swapped), swapped


def test_quantised_level_failing_while_it_runs_is_skipped_and_the_others_run(
        study, tmp_path, monkeypatch, bnb):
    """A probe that passes is no promise: a quantised level (nf4, int8) whose library fails
    while quantising or running the whole model is recorded as skipped with the library's
    message (one line); fp32 still runs.  A plain-torch level's failure is not swallowed."""
    import torch.ao.quantization as tq

    import runner.ml.quantize as q

    manifest, results, data, plan = study
    copy = fresh_copy(results, plan, tmp_path)
    bnb(fail_below=64)
    monkeypatch.setattr(q, "level_problem", lambda model, lv: None)   # the probe passed

    def no_engine(*a, **k):
        raise RuntimeError("Didn't find engine for operation quantized::linear_prepack NoQEngine")
    monkeypatch.setattr(tq, "quantize_dynamic", no_engine)
    lines = []
    summary = evaluate_manifest(manifest, results_dir=copy, data_dir=data,
                                levels=("fp32", "int8", "nf4"), say=lines.append)
    assert sorted({w[1:] for w in summary.written}) == [
        ("fp32", "ok"), ("int8", "skipped"), ("nf4", "skipped")]
    for job in plan.jobs:
        nf4 = evaluation(copy, job.job_id, "nf4")
        assert nf4["reason"] == ("nf4 failed on cpu (bitsandbytes 9.9.9+fake): RuntimeError: "
                                 + KERNEL_ERROR)
        int8 = evaluation(copy, job.job_id, "int8")
        assert int8["reason"] == (f"int8 failed on cpu (torch {torch.__version__}): "
                                  "RuntimeError: Didn't find engine for operation "
                                  "quantized::linear_prepack NoQEngine")
        assert int8["environment"]["torch"] == torch.__version__
        assert evaluation(copy, job.job_id, "fp32")["status"] == "ok"
    assert all("\n" not in line for line in lines)

    def broken(base, lv):
        raise RuntimeError("a bug in plain torch code")
    monkeypatch.setattr(q, "to_level", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        evaluate_manifest(manifest, results_dir=copy, data_dir=data, levels=("fp32",),
                          force=True, say=lambda s: None)


def test_nf4_with_the_installed_bitsandbytes_runs_or_is_skipped_with_its_reason(
        study, tmp_path, monkeypatch):
    """The real library on this machine, whichever branch it takes: on a CPU whose kernel
    cannot take the tiny encoder's shapes (bitsandbytes 0.50 on AVX-512 BF16) the level is
    skipped with the library's message instead of crashing the command; elsewhere it runs."""
    pytest.importorskip("bitsandbytes")
    import bitsandbytes

    import runner.ml.quantize as q

    manifest, results, data, plan = study
    copy = fresh_copy(results, plan, tmp_path)
    monkeypatch.setattr(q, "_cuda_available", lambda: False)
    lines = []
    evaluate_manifest(manifest, results_dir=copy, data_dir=data, levels=("fp32", "nf4"),
                      say=lines.append)
    for job in plan.jobs:
        assert evaluation(copy, job.job_id, "fp32")["status"] == "ok"
        doc = evaluation(copy, job.job_id, "nf4")
        if doc["status"] == "skipped":
            assert doc["reason"].startswith(
                f"nf4 cannot run on cpu with bitsandbytes {bitsandbytes.__version__}")
            assert doc["environment"]["bitsandbytes"] == bitsandbytes.__version__
        else:
            assert doc["status"] == "ok" and doc["size_on_disk_bytes"] > 0, doc


def test_a_skipped_level_is_retried_only_under_another_environment(study, tmp_path,
                                                                   monkeypatch, bnb):
    import runner.recipes.quantized_eval as ev

    manifest, results, data, plan = study
    copy = fresh_copy(results, plan, tmp_path)
    bnb(fail_below=64)
    evaluate_manifest(manifest, results_dir=copy, data_dir=data, levels=("nf4",),
                      say=lambda s: None)
    loads = []
    real_load_job = ev.load_job
    monkeypatch.setattr(ev, "load_job", lambda *a: loads.append(a) or real_load_job(*a))
    # same machine, same libraries: kept, and no job is even loaded
    again = evaluate_manifest(manifest, results_dir=copy, data_dir=data, levels=("nf4",),
                              say=lambda s: None)
    assert again.written == [] and len(again.kept) == len(plan.jobs) and loads == []
    # bitsandbytes upgraded (and now able to): every job's nf4 runs
    bnb(version="10.0.0")
    upgraded = evaluate_manifest(manifest, results_dir=copy, data_dir=data, levels=("nf4",),
                                 say=lambda s: None)
    assert {w[2] for w in upgraded.written} == {"ok"} and len(loads) == len(plan.jobs)


def test_jobs_that_never_quantise_do_not_import_bitsandbytes(study, tmp_path):
    """Training (full fine-tuning and LoRA) and evaluating fp32/int8 never import bitsandbytes
    (its import is slow and, on AVX-512 BF16 CPUs, prints "Failed to load CPU
    gemm_4bit_forward ... pip install kernels" on every job); checked in a fresh process."""
    import subprocess
    import sys

    manifest, _, data, _ = study
    model = manifest.parent / "tiny_bert"
    manifest = tmp_path / "m.toml"
    manifest.write_text(manifest_text(model, "no_bnb").replace(
        json.dumps(list(TASKS)), '["gad"]') + """
[[experiments]]
name = "lora"
strategy = "single_task"
models = ["tiny"]
tasks = ["gad"]
adapter = {method = "lora", r = 2, alpha = 4, dropout = 0.0, target_modules = ["query"]}
""")
    code = f"""
import sys
from runner.cli.run import training_job
from runner.orchestrate import local as executor
from runner.recipes.quantized_eval import evaluate_manifest
from runner.study.manifest import load_manifest
from runner.study.plan import build_plan
plan = build_plan(load_manifest({str(manifest)!r}), {str(data)!r})
assert len(plan.jobs) == 2
rc = executor.run_plan(plan, {str(tmp_path / "res")!r}, job_fn=training_job,
                       out=lambda s: None)
s = evaluate_manifest({str(manifest)!r}, results_dir={str(tmp_path / "res")!r},
                      data_dir={str(data)!r}, levels=("fp32", "int8"), say=lambda s: None)
print("RESULT", rc, sorted({{w[2] for w in s.written}}), "bitsandbytes" in sys.modules)
"""
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=600, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert "RESULT 0 ['ok'] False" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "gemm_4bit_forward" not in proc.stderr and "bitsandbytes" not in proc.stderr


def test_stats_reads_the_evaluations(study):
    from stats.read.evaluation import load_evaluations
    from stats.read.results import load_results

    manifest, results, data, _ = study
    evaluate_manifest(manifest, results_dir=results, data_dir=data, levels=("fp32", "int8"),
                      say=lambda s: None)     # computed here or kept from the test above
    evals, skipped = load_evaluations(load_results([results]).jobs)
    assert not skipped
    assert {(e.level, e.status) for e in evals} >= {("fp32", "ok"), ("int8", "ok")}


def test_rerun_keeps_existing_levels_and_force_recomputes(study):
    manifest, results, data, plan = study
    evaluate_manifest(manifest, results_dir=results, data_dir=data, levels=("fp32",),
                      say=lambda s: None)
    path = results / plan.jobs[0].job_id / "evaluation" / "fp32.json"
    before = (path.stat().st_mtime_ns, path.read_text())
    again = evaluate_manifest(manifest, results_dir=results, data_dir=data, levels=("fp32",),
                              say=lambda s: None)
    assert again.written == [] and len(again.kept) == len(plan.jobs)
    assert (path.stat().st_mtime_ns, path.read_text()) == before
    forced = evaluate_manifest(manifest, results_dir=results, data_dir=data, levels=("fp32",),
                               experiments=("single",), max_test_examples=10, force=True,
                               say=lambda s: None)
    assert len(forced.written) == len(plan.jobs)
    assert plan.jobs[0].tasks == ("bc2gm",)
    assert json.loads(path.read_text())["per_task"]["bc2gm"]["n_test"] == 10


def test_job_without_weights_is_reported_not_fatal(study, tmp_path, capsys):
    manifest, results, data, plan = study
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    victim = plan.jobs[1].job_id
    shutil.rmtree(copy / victim / "checkpoints" / "best")
    for job in plan.jobs:
        shutil.rmtree(copy / job.job_id / "evaluation", ignore_errors=True)
    code = runner_main(["evaluate", str(manifest), "--results-dir", str(copy), "--data-dir",
                        str(data), "--levels", "fp32", "--experiments", "single"])
    out = capsys.readouterr().out
    assert code == 1 and f"{victim}: skipped (no best weights kept" in out
    assert not (copy / victim / "evaluation" / "fp32.json").exists()
    assert (copy / plan.jobs[0].job_id / "evaluation" / "fp32.json").is_file()


@pytest.mark.parametrize("extra,needle", [
    (["--levels", "fp8"], "unknown level 'fp8'"),
    (["--levels", "fp32,fp32"], "listed twice"),
    (["--experiments", "nope"], "no experiment named 'nope'"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_evaluate_bad_input_exits_2(study, extra, needle, capsys):
    manifest, results, data, _ = study
    code = runner_main(["evaluate", str(manifest), "--results-dir", str(results),
                        "--data-dir", str(data), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1


def test_evaluate_missing_manifest_or_results_exits_2(study, tmp_path, capsys):
    manifest, _, data, _ = study
    assert runner_main(["evaluate", str(tmp_path / "none.toml")]) == 2
    assert runner_main(["evaluate", str(manifest), "--results-dir", str(tmp_path / "empty"),
                        "--data-dir", str(data)]) == 2
    assert "no results folder" in capsys.readouterr().err
    with pytest.raises(InputError):
        parse_levels("")


def test_similarity_subcommand_writes_a_valid_file(study, tmp_path, capsys):
    from stats.read.similarity import load_similarity

    manifest, _, data, _ = study
    out = tmp_path / "sim.json"
    assert runner_main(["similarity", "--tasks", "bc2gm,gad,biosses", "--data-dir", str(data),
                        "--out", str(out)]) == 0
    doc = load_similarity(out)
    assert doc["tasks"] == ["bc2gm", "gad", "biosses"] and doc["tokenizer"] is None
    assert "wordpiece_jaccard" not in doc["measures"]
    # NER and GAD share their words exactly here; biosses has no labels (null with itself)
    assert doc["measures"]["word_jaccard"][0][1] == pytest.approx(1.0)
    assert doc["measures"]["label_jaccard"][2][2] is None
    # --manifest: its tasks and its (local) model's tokenizer, into the study's folder
    res = tmp_path / "res"
    assert runner_main(["similarity", "--manifest", str(manifest), "--data-dir", str(data),
                        "--results-dir", str(res)]) == 0
    doc = load_similarity(res / "task_similarity.json")
    assert doc["tasks"] == list(TASKS) and doc["tokenizer"]["path"].endswith("tiny_bert")
    assert "wordpiece_jaccard" in doc["measures"]
    capsys.readouterr()
    assert runner_main(["similarity", "--tasks", "gad"]) == 2            # no --out
    assert runner_main(["similarity", "--tasks", "gad,nope", "--data-dir", str(data),
                        "--out", str(tmp_path / "x.json")]) == 2         # no data for 'nope'
    assert not (tmp_path / "x.json").exists()


def test_pairs_run_writes_task_similarity_once(study, tmp_path):
    _, _, data, _ = study
    base = ('[study]\nname = "p"\nseeds = [1]\n[[experiments]]\nname = "pairs"\n'
            'strategy = "multi_task"\nmodels = ["minilm"]\n')
    pairs = parse_manifest(base + 'task_sets = "pairs"\npair_tasks = ["bc2gm", "gad", "hoc"]\n')
    one = parse_manifest(base + 'task_sets = [["bc2gm", "gad"]]\n')
    assert has_pair_experiment(pairs) and not has_pair_experiment(one)
    res = tmp_path / "p"
    res.mkdir()
    assert similarity_step(pairs, res, data, 3) == 3                  # unfinished run: nothing
    assert not (res / "task_similarity.json").exists()
    assert similarity_step(one, res, data, 0) == 0                    # no pairs: nothing
    assert not (res / "task_similarity.json").exists()
    assert similarity_step(pairs, res, data, 0) == 0
    doc = json.loads((res / "task_similarity.json").read_text())
    assert doc["tasks"] == ["bc2gm", "gad", "hoc"]
    stamp = os.stat(res / "task_similarity.json").st_mtime_ns
    assert similarity_step(pairs, res, data, 0) == 0                  # present: left alone
    assert os.stat(res / "task_similarity.json").st_mtime_ns == stamp
