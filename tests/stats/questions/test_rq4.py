"""RQ4 on a synthetic gain matrix whose Spearman correlation with similarity is known."""

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from stats.questions import rq4
from tests.stats.questions.test_rq2 import write_job
from tests.stats.sections import build

TASKS = ["a", "b", "c"]
# Unordered similarity: (a,b) = 0.1, (a,c) = 0.5, (b,c) = 0.9.
SIM = {("a", "b"): 0.1, ("a", "c"): 0.5, ("b", "c"): 0.9}
# Mean gain of target from partner, increasing with similarity so the six points' ranks are
# x: 1.5 1.5 3.5 3.5 5.5 5.5 (ties), y: 1 2 3 4 5 6.
GAIN = {("a", "b"): -0.05, ("b", "a"): -0.03, ("a", "c"): -0.01, ("c", "a"): 0.01,
        ("b", "c"): 0.03, ("c", "b"): 0.05}
# Spearman = Pearson of ranks: centred x (-2,-2,0,0,2,2), y (-2.5,-1.5,-.5,.5,1.5,2.5);
# sum xy = 16, sum x^2 = 16, sum y^2 = 17.5 -> rho = 16 / sqrt(16 * 17.5) = 0.956183
RHO = 16 / math.sqrt(16 * 17.5)
SEEDS = (1, 2, 3, 4, 5)
NOISE = (-0.002, -0.001, 0.0, 0.001, 0.002)  # mean 0: the seed mean of the gain is GAIN
NOISY = {("c", "a")}  # this pair's noise is 25x larger: +1 point but not significant


def sim_doc(jsd=True):
    mat = [[1.0 if i == j else SIM[tuple(sorted((TASKS[i], TASKS[j])))] for j in range(3)]
           for i in range(3)]
    measures = {"label_jaccard": mat}
    if jsd:
        measures["unigram_jsd"] = [[0.0 if i == j else 1 - v for j, v in enumerate(row)]
                                   for i, row in enumerate(mat)]
    return {"schema": "task_similarity/1", "tasks": TASKS, "measures": measures}


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results" / "rq4"
    base = {"a": 0.70, "b": 0.60, "c": 0.80}
    for k, seed in enumerate(SEEDS):
        st_score = {t: base[t] + 0.01 * seed for t in TASKS}
        for t in TASKS:
            write_job(root, f"st_{t}{seed}", strategy="single_task", experiment="st",
                      tasks=[t], seed=seed, trainable=1, adapter=False,
                      scores={t: st_score[t]})
        for x, y in (("a", "b"), ("a", "c"), ("b", "c")):
            scores = {}
            for tgt, par in ((x, y), (y, x)):
                noise = NOISE[k] * (25 if (tgt, par) in NOISY else 1)
                scores[tgt] = st_score[tgt] + GAIN[(tgt, par)] + noise
            write_job(root, f"mt_{x}{y}{seed}", strategy="multi_task", experiment="pairs",
                      tasks=[x, y], seed=seed, trainable=1, adapter=False, scores=scores)
    # a 3-task job is not a pair: ignored by RQ4
    write_job(root, "mt_abc1", strategy="multi_task", experiment="all", tasks=TASKS, seed=1,
              trainable=1, adapter=False)
    (root / "task_similarity.json").write_text(json.dumps(sim_doc()))
    return tmp_path / "results"


def test_gains_correlation_and_negative_transfer(results, tmp_path):
    out = build("rq4", [results], tmp_path / "paper")
    assert out["reason"] is None and out["similarity_file"].endswith("task_similarity.json")
    rows = {(r["target"], r["partner"]): r for r in out["rows"]}
    assert set(rows) == set(GAIN)
    for key, g in GAIN.items():
        assert rows[key]["mean_gain"] == pytest.approx(g, abs=1e-12)
        assert rows[key]["n"] == 5 and rows[key]["holm_family_size"] == 6
    negative = {k for k, r in rows.items() if r["negative_transfer"]}
    assert negative == {("a", "b"), ("b", "a"), ("a", "c")}
    assert rows[("c", "a")]["significant"] is False  # +1 point, noisy
    assert rows[("c", "b")]["positive_transfer"] is True
    corr = {c["measure"]: c for c in out["correlations"]}
    assert corr["label_jaccard"]["rho"] == pytest.approx(RHO, abs=1e-9)
    assert corr["unigram_jsd"]["rho"] == pytest.approx(-RHO, abs=1e-9)  # divergence
    assert corr["label_jaccard"]["n"] == 6
    # the p is a permutation test over the 3 task labels (all 3! = 6 labellings), not
    # scipy's, which treats the 6 pairs as independent (issue 24)
    perms = []
    for order in itertools.permutations(TASKS):
        relabel = dict(zip(TASKS, order))
        xs_perm = [SIM[tuple(sorted((relabel[t], relabel[s])))] for t, s in GAIN]
        perms.append(sps.spearmanr(xs_perm, list(GAIN.values()))[0])
    want = np.mean(np.abs(perms) >= RHO - 1e-12)
    assert corr["label_jaccard"]["p"] == pytest.approx(want) and want >= 2 / 6
    assert corr["label_jaccard"]["permutation"]["exact"] is True
    assert corr["label_jaccard"]["permutation"]["permutations"] == 6
    assert 0 < corr["label_jaccard"]["p_pairs"] < 0.05  # what the pairs-as-independent p says
    # OLS line of gain on similarity through the six points, by numpy
    xs = [SIM[tuple(sorted(k))] for k in GAIN]
    slope, _ = np.polyfit(xs, list(GAIN.values()), 1)
    assert corr["label_jaccard"]["slope"] == pytest.approx(slope)
    paper = tmp_path / "paper"
    tex = (paper / "table_rq4_gains.tex").read_text()
    assert "negative" in tex and "nan" not in tex.lower()
    assert "+0.96" in (paper / "table_rq4_similarity_gain.tex").read_text()
    assert "permutation test over task labels" in (paper / "table_rq4_similarity_gain.tex").read_text()
    summary = (paper / "SUMMARY.txt").read_text()
    assert "permutation p 0.333 (task labels permuted, all 6 permutations" in summary
    for stem in ("fig_rq4_gain_matrix_minilm_pairs", "fig_rq4_similarity",
                 "fig_rq4_similarity_vs_gain_minilm"):
        assert (paper / f"{stem}.pdf").is_file() and (paper / f"{stem}.png").is_file()


def test_degenerate_inputs(tmp_path):
    root = tmp_path / "r"
    # one seed; b and c have no single-task run: 2 gains, tests n/a, Spearman n/a
    write_job(root, "sa", strategy="single_task", experiment="st", tasks=["a"], seed=1,
              trainable=1, scores={"a": 0.5})
    write_job(root, "mab", strategy="multi_task", experiment="pairs", tasks=["a", "b"], seed=1,
              trainable=1, scores={"a": 0.6, "b": 0.4})
    write_job(root, "mac", strategy="multi_task", experiment="pairs", tasks=["a", "c"], seed=1,
              trainable=1, scores={"a": 0.6, "c": 0.4})
    sim = root / "task_similarity.json"
    sim.write_text(json.dumps(sim_doc(False)))
    out = build("rq4", [root], tmp_path / "p")
    rows = {(r["target"], r["partner"]): r for r in out["rows"]}
    assert rows[("a", "b")]["mean_gain"] == pytest.approx(0.1)
    assert rows[("a", "b")]["p_holm"] is None and "at least 2" in rows[("a", "b")]["reason"]
    assert rows[("c", "a")]["mean_gain"] is None and "no single-task" in rows[("c", "a")]["reason"]
    assert rows[("b", "a")]["mean_gain"] is None
    corr = out["correlations"][0]
    assert corr["rho"] is None and "at least 3" in corr["reason"]
    assert "n/a" in (tmp_path / "p" / "table_rq4_similarity_gain.tex").read_text()
    # no similarity file: gains still reported, the reason says what is missing
    sim.unlink()
    out = build("rq4", [root], tmp_path / "q")
    assert out["correlations"] == [] and "task_similarity.json" in out["similarity_reason"]
    # nothing pairwise at all
    (tmp_path / "empty").mkdir()
    out = build("rq4", [tmp_path / "empty"], tmp_path / "s")
    assert out["rows"] == [] and "no pairwise" in out["reason"]


def test_constant_gain_is_na():
    rows = [{"model": "m", "target": t, "partner": p, "mean_gain": 0.0, "mt_experiment": "x"}
            for t, p in GAIN]
    corr = rq4.similarity_vs_gain(rows, sim_doc(False))
    assert corr[0]["rho"] is None and "constant gain" in corr[0]["reason"]


def test_tables_compile_with_pdflatex(tmp_path):
    import subprocess

    from stats.questions import rq2, rq3
    from tests.stats.render.test_latex import require_pdflatex

    require_pdflatex()   # skips without pdflatex, fails in CI
    rows = [{"model": "bio_bert&co", "mt_experiment": "pairs_50%", "target": "a", "partner": "b",
             "n": 3, "mean_gain": -0.02, "seed_interval": {"low": -0.03, "high": -0.01},
             "p_holm": 0.01, "significant": True, "negative_transfer": True,
             "positive_transfer": False},
            {"model": "m", "mt_experiment": "x", "target": "b", "partner": "a", "n": 1,
             "mean_gain": None, "reason": "1 matched seed(s): needs #2 {at least}", "p_holm": None}]
    corr = rq4.similarity_vs_gain(
        [{"model": "m", "target": t, "partner": p, "mean_gain": g, "mt_experiment": "x"}
         for (t, p), g in GAIN.items()], sim_doc())
    point = {"task": "bc2gm", "model": "m_1", "experiment": "st", "level": "int8", "device": "cpu", "metric": 0.8,
             "size_on_disk_bytes": 2e7, "latency_ms_per_example": 1.0, "ece_before": 0.1,
             "ece_after": 0.05, "temperature": 1.2, "pareto_size": True, "pareto_latency": False}
    ho = {"model": "m", "task": "s800", "mt_experiment": "mt_a", "st_experiment": "st_b",
          "st_tasks": "bc2gm", "n": 2, "mt_mean": 0.7, "st_mean": 0.6, "significant": True,
          "bootstrap": {"delta": 0.1, "low": 0.05, "high": 0.15, "p_boot": 0.01},
          "mean_diff": 0.1, "diff_interval": {"low": 0.02, "high": 0.18, "level": 0.95},
          "paired_t": {"p": 0.03, "reason": None}, "source_seeds": [1, 2], "p_holm": 0.02,
          "mt_trainable": 3e5, "st_trainable": 2.9e5, "param_relative_gap": 0.033}
    body = "\n".join([rq4.gain_table(rows, sim_doc()), rq4.correlation_table(corr),
                      rq3.table([point], [{"model": "m", "experiment": "e", "level": "nf4",
                                           "reason": "needs CUDA_HOME ~ GPU"}]),
                      rq2.table([ho, {"model": "m", "task": None, "reason": "no x_y"}])])
    doc = tmp_path / "t.tex"
    doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n"
                   + body + "\n\\end{document}\n")
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
                         check=False,
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:]


def test_sections_plug_into_build_paper(results, tmp_path):
    from stats.report import SECTIONS, build_paper

    # the RQ2-RQ4 sections are registered in the default section list
    assert {"rq2", "rq3", "rq4"} <= {s.name for s in SECTIONS}
    out = tmp_path / "paper"
    build_paper(out, [results])
    stats_json = json.loads((out / "statistics.json").read_text())
    assert stats_json["rq4"]["correlations"][0]["rho"] == pytest.approx(RHO, abs=1e-9)
    assert stats_json["rq4"]["similarity_file"].endswith("task_similarity.json")
    assert "no held-out" in stats_json["rq2"]["reason"]
    assert "no evaluation" in stats_json["rq3"]["reason"]
    summary = (out / "SUMMARY.txt").read_text()
    assert "NEGATIVE TRANSFER" in summary and "Spearman rho +0.96" in summary
    assert (out / "table_rq4_gains.tex").is_file()
    assert (out / "fig_rq4_similarity_vs_gain_minilm.png").is_file()


def _with_predictions(job_dir, task, correct):
    """Give a written job NER-count predictions for ``task``: unit i right (1 tp) where
    correct[i], else wrong (1 fp + 1 fn); the recorded F1 is what the units give."""
    import pandas as pd

    correct = np.asarray(correct, dtype=np.int64)
    (job_dir / "predictions").mkdir(exist_ok=True)
    pd.DataFrame({"unit_id": [f"u{i:04d}" for i in range(len(correct))], "gold": "[]",
                  "pred": "[]", "tp": correct, "fp": 1 - correct, "fn": 1 - correct}
                 ).to_parquet(job_dir / "predictions" / f"{task}.parquet")
    res = json.loads((job_dir / "result.json").read_text())
    f1 = float(correct.mean())   # 2tp / (2tp + fp + fn) with one entity per unit
    res["per_task"][task].update(metrics={"f1": f1}, stat_spec={"kind": "counts"},
                                 predictions=f"predictions/{task}.parquet", n_test=len(correct))
    (job_dir / "result.json").write_text(json.dumps(res))


def test_one_seed_still_gets_the_test_unit_bootstrap(tmp_path):
    """With one seed the seed-level test is n/a, but the gain's test-set uncertainty is
    reported: a multi-task run right on a superset of the single-task run's units (+10
    points) has a CI above zero; one right on as many *other* units has a CI around zero."""
    root = tmp_path / "r"
    n = 400
    st = np.zeros(n, dtype=bool)
    st[: n // 2] = True                        # single-task right on the first half
    better = st.copy()
    better[n // 2: n // 2 + n // 10] = True    # + 40 more units
    shuffled = np.roll(st, n // 4)             # as many right units, a quarter of them others
    _with_predictions(write_job(root, "sa", strategy="single_task", experiment="st",
                                tasks=["a"], seed=1, trainable=1, adapter=False), "a", st)
    _with_predictions(write_job(root, "sb", strategy="single_task", experiment="st",
                                tasks=["b"], seed=1, trainable=1, adapter=False), "b", st)
    mab = write_job(root, "mab", strategy="multi_task", experiment="pairs", tasks=["a", "b"],
                    seed=1, trainable=1, adapter=False)
    _with_predictions(mab, "a", better)
    _with_predictions(mab, "b", shuffled)
    out = build("rq4", [root], tmp_path / "p", resamples=2000)
    rows = {(r["target"], r["partner"]): r for r in out["rows"]}
    up, flat = rows[("a", "b")], rows[("b", "a")]
    assert up["p_holm"] is None and "at least 2" in up["reason"]      # no seed-level test
    assert up["mean_gain"] == pytest.approx(0.1) and flat["mean_gain"] == pytest.approx(0.0)
    ub, fb = up["unit_bootstrap"], flat["unit_bootstrap"]
    assert ub["delta"] == pytest.approx(0.1) and ub["n_units"] == n
    assert 0 < ub["low"] <= 0.1 <= ub["high"] and ub["p_boot"] < 0.01
    assert fb["delta"] == pytest.approx(0.0) and fb["low"] < 0 < fb["high"]
    assert fb["p_boot"] > 0.5
    assert up["negative_transfer"] is None and up["positive_transfer"] is None  # not a verdict
    tex = (tmp_path / "p" / "table_rq4_gains.tex").read_text()
    assert "Units" in tex and "nan" not in tex.lower()
    lines = rq4.summary_lines(out)
    assert any("test-unit paired bootstrap" in ln and "over 400 units" in ln for ln in lines)
    # deterministic in the seed
    again = build("rq4", [root], tmp_path / "q", resamples=2000)
    assert again["rows"][0]["unit_bootstrap"] == out["rows"][0]["unit_bootstrap"]
