"""RQ3: the Pareto frontier on a hand-made set, evaluation files, reliability pooling."""

import json

import pytest

from stats.questions import rq3
from tests.stats.questions.test_rq2 import write_job
from tests.stats.sections import build


def bins(pairs):
    """15 bins; pairs maps bin index -> (count, confidence, accuracy)."""
    out = []
    for m in range(15):
        c, conf, acc = pairs.get(m, (0, None, None))
        out.append({"lower": m / 15, "upper": (m + 1) / 15, "count": c, "confidence": conf,
                    "accuracy": acc})
    return out


def write_eval(job_dir, job_id, level, *, metric=None, size_mb=None, latency=None,
               skipped=None, calibration=True):
    d = job_dir / "evaluation"
    d.mkdir(exist_ok=True)
    if skipped:
        doc = {"schema": "evaluation/1", "job_id": job_id, "level": level, "status": "skipped",
               "reason": skipped}
    else:
        cal = None
        if calibration:
            cal = {"kind": "token", "n_bins": 15, "temperature": 1.5, "ece_before": 0.08,
                   "ece_after": 0.02, "nll_val_before": 0.4, "nll_val_after": 0.3,
                   "bins_before": bins({13: (10, 0.9, 0.8), 14: (30, 0.98, 0.9)}),
                   "bins_after": bins({12: (10, 0.82, 0.8), 13: (30, 0.9, 0.9)})}
        doc = {"schema": "evaluation/1", "job_id": job_id, "level": level, "status": "ok",
               "reason": None, "device": "cpu", "batch_size": 32,
               "latency_ms_per_example": latency, "throughput_examples_per_s": 1000 / latency,
               "peak_memory_bytes": 10**8, "size_on_disk_bytes": int(size_mb * 1e6),
               "per_task": {"bc2gm": {"primary_metric": "f1",
                                      "metrics": {"f1": metric, "precision": metric},
                                      "n_test": 100, "calibration": cal,
                                      "calibration_reason": None if cal else "not recorded"}}}
    (d / f"{level}.json").write_text(json.dumps(doc))


def test_pareto_mask_by_hand():
    # (cost, value): b dominates a (same value, cheaper); c, d trade off; e dominated by b.
    costs = [90, 45, 25, 15, 400]
    vals = [0.80, 0.80, 0.78, 0.70, 0.79]
    assert rq3.pareto_mask(costs, vals) == [False, True, True, True, False]
    assert rq3.pareto_mask([1, 1], [0.5, 0.5]) == [True, True]  # ties do not dominate
    assert rq3.pareto_mask([], []) == []


@pytest.fixture
def study(tmp_path):
    root = tmp_path / "results"
    # model a (seeds 1, 2): fp32 / fp16 / int8 / nf4; model b: fp32 + nf4 skipped
    spec = {"fp32": (0.80, 90, 10.0), "fp16": (0.80, 45, 6.0), "int8": (0.78, 25, 12.0),
            "nf4": (0.70, 15, 20.0)}
    for seed in (1, 2):
        d = write_job(root, f"a{seed}", strategy="single_task", experiment="st",
                      tasks=["bc2gm"], seed=seed, trainable=1, adapter=False)
        for level, (m, s, lat) in spec.items():
            # seeds differ symmetrically so the seed mean is the value above
            delta = 0.01 if seed == 1 else -0.01
            write_eval(d, f"a{seed}", level, metric=m + delta, size_mb=s, latency=lat)
    b = write_job(root, "b1", strategy="single_task", experiment="st", tasks=["bc2gm"], seed=1,
                  trainable=1, adapter=False, model="bert")
    write_eval(b, "b1", "fp32", metric=0.79, size_mb=400, latency=30.0, calibration=False)
    write_eval(b, "b1", "nf4", skipped="bitsandbytes needs a CUDA GPU")
    (b / "evaluation" / "bf16.json").write_text('{"schema": "evaluation/1", "job_id": "b1"}')
    return root


def test_section_frontier_table_figures(study, tmp_path):
    out = build("rq3", [study], tmp_path / "paper")
    assert out["reason"] is None
    pts = {(r["model"], r["level"]): r for r in out["rows"]}
    assert set(pts) == {("minilm", "fp32"), ("minilm", "fp16"), ("minilm", "int8"),
                        ("minilm", "nf4"), ("bert", "fp32")}
    assert pts[("minilm", "fp32")]["metric"] == pytest.approx(0.80)
    assert pts[("minilm", "fp32")]["seeds"] == [1, 2]
    size_front = {k for k, r in pts.items() if r["pareto_size"]}
    lat_front = {k for k, r in pts.items() if r["pareto_latency"]}
    assert size_front == {("minilm", "fp16"), ("minilm", "int8"), ("minilm", "nf4")}
    assert lat_front == {("minilm", "fp16")}
    assert pts[("minilm", "int8")]["ece_before"] == pytest.approx(0.08)
    assert pts[("bert", "fp32")]["ece_before"] is None
    assert pts[("bert", "fp32")]["calibration_reason"] == "not recorded"
    assert out["skipped_levels"][0]["reason"] == "bitsandbytes needs a CUDA GPU"
    assert any("bf16.json" in s["path"] for s in out["skipped"])
    tex = (tmp_path / "paper" / "table_rq3_frontier.tex").read_text()
    assert "bitsandbytes needs a CUDA GPU" in tex and r"\textbf{80.0}" in tex
    assert "nan" not in tex.lower()
    for stem in ("fig_rq3_frontier_bc2gm", "fig_rq3_reliability_bc2gm"):
        for ext in ("pdf", "png"):
            assert (tmp_path / "paper" / f"{stem}.{ext}").stat().st_size > 1000
    # reliability pooled over the two seeds: counts doubled, weighted means unchanged
    rel = next(r for r in out["reliability"]
               if r["level"] == "fp32" and r["model"] == "minilm")
    assert rel["before"][14]["count"] == 60
    assert rel["before"][14]["accuracy"] == pytest.approx(0.9)


def test_pooled_bins_weighted():
    a = bins({3: (1, 0.2, 1.0)})
    b = bins({3: (3, 0.26, 0.0)})
    pooled = rq3.pooled_bins([a, b])
    assert pooled[3]["count"] == 4
    assert pooled[3]["confidence"] == pytest.approx((0.2 + 3 * 0.26) / 4)
    assert pooled[3]["accuracy"] == pytest.approx(0.25)
    assert pooled[0]["accuracy"] is None


def test_no_evaluations_is_na(tmp_path):
    write_job(tmp_path / "r", "x1", strategy="single_task", experiment="st", tasks=["gad"],
              seed=1, trainable=1)
    out = build("rq3", [tmp_path / "r"], tmp_path / "p")
    assert out["rows"] == [] and "no evaluation" in out["reason"]


def test_all_skipped_is_na(tmp_path):
    d = write_job(tmp_path / "r", "x1", strategy="single_task", experiment="st", tasks=["gad"],
                  seed=1, trainable=1)
    write_eval(d, "x1", "nf4", skipped="no GPU")
    out = build("rq3", [tmp_path / "r"], tmp_path / "p")
    assert out["reason"] == "every evaluated level was skipped"
    assert "no GPU" in (tmp_path / "p" / "table_rq3_frontier.tex").read_text()


def test_a_level_skipped_for_a_library_reason_is_reported_once_with_it(tmp_path):
    """nf4 skipped on every seed because bitsandbytes' CPU kernel cannot take the model: the
    reason is in the table and the summary once per (model, experiment, level), with the
    number of jobs, and the other levels are still on the frontier."""
    why = ("nf4 cannot run on cpu with bitsandbytes 0.50.2 (Linear 32->32): RuntimeError: "
           "shape '[32, 0]' is invalid for input of size 16")
    for seed in (1, 2, 3):
        d = write_job(tmp_path / "r", f"s{seed}", strategy="single_task", experiment="st",
                      tasks=["bc2gm"], seed=seed, trainable=1, adapter=False)
        write_eval(d, f"s{seed}", "fp32", metric=0.8, size_mb=90, latency=10.0)
        write_eval(d, f"s{seed}", "nf4", skipped=why)
    out = build("rq3", [tmp_path / "r"], tmp_path / "p")
    assert out["reason"] is None and {r["level"] for r in out["rows"]} == {"fp32"}
    assert [s["reason"] for s in out["skipped_levels"]] == [why] * 3
    lines = rq3.summary_lines(out)
    assert [ln for ln in lines if ln.startswith("skipped level")] == [
        f"skipped level: minilm st nf4 (3 jobs): {why}"]
    tex = (tmp_path / "p" / "table_rq3_frontier.tex").read_text()
    assert tex.count(r"Linear 32-\textgreater{}32): RuntimeError: shape '[32, 0]' is") == 1


def test_cpu_and_gpu_latencies_are_never_on_one_frontier(tmp_path):
    """Issue 23: a GPU's 1 ms does not knock the CPU's best point off the CPU frontier; each
    device has its own, labelled, and the size frontier is still the task's."""
    root = tmp_path / "results"
    for job_id, model, device, latency, metric in (
            ("c1", "small", "cpu (2 threads)", 5.0, 0.70),
            ("c2", "big", "cpu (2 threads)", 40.0, 0.80),
            ("g1", "small", "cuda (Tesla T4)", 1.0, 0.70),
            ("g2", "big", "cuda (Tesla T4)", 2.0, 0.80)):
        d = write_job(root, job_id, strategy="single_task", experiment="st", tasks=["bc2gm"],
                      seed=1, trainable=1, adapter=False, model=model)
        write_eval(d, job_id, "fp32", metric=metric, size_mb=10 if model == "small" else 400,
                   latency=latency)
        doc = json.loads((d / "evaluation" / "fp32.json").read_text())
        (d / "evaluation" / "fp32.json").write_text(json.dumps({**doc, "device": device}))
    out = build("rq3", [root], tmp_path / "paper")
    pts = {(r["model"], r["device"]): r for r in out["rows"]}
    assert len(pts) == 4
    # on one pooled frontier the CPU points would both be dominated by the GPU's
    assert all(r["pareto_latency"] for r in pts.values())
    assert {k for k, r in pts.items() if r["pareto_size"]} == set(pts)   # ties: both sizes
    tex = (tmp_path / "paper" / "table_rq3_frontier.tex").read_text()
    assert "latency on cpu (2 threads)" in tex and "latency on cuda (Tesla T4)" in tex
