"""Pairing, RQ1 and RQ5 on synthetic result folders with known truth."""

import json
import shutil

import numpy as np
import pytest

from stats.core.analysis import analyse
from stats.core.significance import EXPOSURE, GENUINE, NO_GAIN, NOT_TESTABLE
from stats.core.study import Options, Study
from stats.read.results import load_results
from tests.stats.synthetic import Design, write_study

SMALL = {"bc2gm": 400, "chemprot": 300, "biosses": 40}


def run(root, design, edit=None, resamples=300):
    write_study(root, design)
    if edit:
        edit(root)
    loaded = load_results([root])
    study = Study(loaded.jobs, loaded.skipped, Options(resamples=resamples))
    return study, analyse(study)


def rows(families, task):
    return [r for f in families for r in f["rows"] if r["task"] == task]


def jobs_of(root, etype, task=None, seeds=None):
    out = []
    for p in root.glob("*/result.json"):
        d = json.loads(p.read_text())
        if d["experiment_type"] == etype and (task is None or task in d["tasks"]) \
                and (seeds is None or d["seed"] in seeds):
            out.append(p.parent)
    return out


def test_injected_three_point_mt_advantage_is_found_and_called_genuine(tmp_path):
    study, an = run(tmp_path, Design(mt_gain={"bc2gm": 0.03}, n_units=SMALL))
    (rq1,) = rows(an.multitask, "bc2gm")
    assert rq1["n"] == 5 and rq1["mean_diff"] == pytest.approx(0.03, abs=0.01)
    assert rq1["significant"] and rq1["p_holm"] < 0.05 and rq1["holm_family_size"] == 3
    boot = rq1["paired_bootstrap"]
    assert boot["low"] > 0 and boot["low"] < rq1["mean_diff"] < boot["high"]
    assert boot["n_units"] == 400 and boot["p_bk"] < 0.05
    (rq5,) = rows(an.rq5, "bc2gm")
    assert rq5["verdict"] == GENUINE and rq5["parity_summary"]["holds"] is True
    assert "MT − TC = +" in rq5["verdict_reason"]
    for task in ("chemprot", "biosses"):
        (r,) = rows(an.rq5, task)
        assert r["verdict"] == NO_GAIN and r["verdict_reason"]
    summary = an.multitask[0]["summary"]
    assert summary["improved_significant"] == 1 and summary["tasks_compared"] == 3
    assert summary["low"] < summary["mean_gain"] < summary["high"]
    # predictions reproduce result.json: no consistency note
    assert not [n for n in study.notes if "recomputed" in n]


def test_gain_that_vanishes_under_token_control_is_data_exposure(tmp_path):
    # ten seeds: the 90% interval of MT − TC fits inside ±1 point (equivalence, issue 24)
    _, an = run(tmp_path, Design(tasks=("bc2gm", "chemprot"), mt_gain={"bc2gm": 0.03},
                                 tc_gain={"bc2gm": 0.03}, n_units=SMALL, seeds=tuple(range(1, 11))))
    (r,) = rows(an.rq5, "bc2gm")
    assert r["verdict"] == EXPOSURE and abs(r["mean_diff"]) < 0.01
    eq = r["equivalence"]
    assert eq["equivalent"] and -0.01 < eq["low"] < eq["high"] < 0.01


def test_parity_violation_is_flagged_and_blocks_the_verdict(tmp_path):
    _, an = run(tmp_path, Design(tasks=("bc2gm", "chemprot"), mt_gain={"bc2gm": 0.03},
                                 tc_token_scale={"bc2gm": 0.8}, write_predictions=False,
                                 n_units=SMALL))
    (r,) = rows(an.rq5, "bc2gm")
    ps = r["parity_summary"]
    assert ps["holds"] is False and ps["max_gap"] == pytest.approx(0.2, abs=1e-6)
    assert r["verdict"] == NOT_TESTABLE and "parity violated" in r["verdict_reason"]
    assert all(p["holds"] is False for p in r["parity"])
    (ok,) = rows(an.rq5, "chemprot")
    assert ok["parity_summary"]["holds"] is True


def test_parity_threshold_is_configurable(tmp_path):
    write_study(tmp_path, Design(tasks=("bc2gm",), tc_token_scale={"bc2gm": 0.96},
                                 write_predictions=False, n_units=SMALL))
    loaded = load_results([tmp_path])
    for threshold, holds in ((0.05, True), (0.03, False)):
        an = analyse(Study(loaded.jobs, [], Options(resamples=50, parity_threshold=threshold)))
        assert rows(an.rq5, "bc2gm")[0]["parity_summary"]["holds"] is holds


def test_mixed_tokenizers_make_parity_not_applicable(tmp_path):
    _, an = run(tmp_path, Design(tasks=("bc2gm",), mt_gain={"bc2gm": 0.03},
                                 tc_tokenizer={"bc2gm": "ffffeeee0000"}, write_predictions=False,
                                 n_units=SMALL))
    (r,) = rows(an.rq5, "bc2gm")
    assert r["parity_summary"]["holds"] is None and "mixed tokenizers" in r["verdict_reason"]
    assert r["verdict"] == NOT_TESTABLE


def test_missing_counterparts_and_single_strategy_tasks_are_not_applicable(tmp_path):
    def edit(root):
        for d in jobs_of(root, "single_task_baseline", "chemprot"):
            shutil.rmtree(d)  # chemprot: only multi-task ran
        for d in jobs_of(root, "single_task_baseline", "bc2gm", seeds={1, 2, 3}):
            shutil.rmtree(d)
        for d in jobs_of(root, "multi_task", seeds={4, 5}):
            shutil.rmtree(d)  # bc2gm: ST seeds 4, 5 vs MT seeds 1-3, no common seed

    _, an = run(tmp_path, Design(tasks=("bc2gm", "chemprot"), write_predictions=False,
                                     n_units=SMALL), edit)
    (chem,) = rows(an.multitask, "chemprot")
    assert chem["mean_diff"] is None and "only multi_task" in chem["reason"]
    (bc,) = rows(an.multitask, "bc2gm")
    assert bc["mean_diff"] is None and "missing counterpart" in bc["reason"]
    orphans = [r for r in rows(an.rq5, "bc2gm") if not r["n"]]
    assert orphans and all("missing counterpart" in r["reason"] for r in orphans)
    assert an.multitask[0]["summary"]["reason"]


def test_one_seed_gives_reasons_not_numbers(tmp_path):
    _, an = run(tmp_path, Design(tasks=("bc2gm",), seeds=(1,), mt_gain={"bc2gm": 0.03},
                                 n_units=SMALL))
    (r,) = rows(an.multitask, "bc2gm")
    assert r["paired_t"]["p"] is None and "1 matched seed" in r["paired_t"]["reason"]
    assert r["p_holm"] is None and r["mde"]["d_z"] is None
    assert r["paired_bootstrap"]["low"] is not None  # test-set CI exists even with one seed
    (v,) = rows(an.rq5, "bc2gm")
    assert v["verdict"] == NOT_TESTABLE
    st = next(s for s in an.systems if s["strategy"] == "single_task")
    assert st["sd"] is None and st["seed_interval"]["reason"]


def test_identical_scores_are_not_applicable(tmp_path):
    def edit(root):
        st = {json.loads(p.read_text())["seed"]: json.loads(p.read_text())
              for p in (d / "result.json" for d in jobs_of(root, "single_task_baseline"))}
        for d in jobs_of(root, "multi_task"):
            data = json.loads((d / "result.json").read_text())
            data["per_task"]["bc2gm"]["metrics"] = st[data["seed"]]["per_task"]["bc2gm"]["metrics"]
            (d / "result.json").write_text(json.dumps(data))

    _, an = run(tmp_path, Design(tasks=("bc2gm",), write_predictions=False, n_units=SMALL), edit)
    (r,) = rows(an.multitask, "bc2gm")
    assert r["mean_diff"] == 0.0 and "identical scores" in r["reason"]
    assert r["d_z"]["reported"] is None and r["wilcoxon"]["p"] is None


def test_task_level_resample_cache_gives_the_same_numbers(tmp_path):
    """Resampling a whole task at once (shared draws) equals resampling each system alone."""
    from stats.core import study_bootstrap

    write_study(tmp_path, Design(tasks=("bc2gm", "chemprot"), seeds=(1, 2),
                                 mt_gain={"bc2gm": 0.03}, n_units=SMALL))
    loaded = load_results([tmp_path])
    cached = analyse(Study(loaded.jobs, [], Options(resamples=200)))
    plain_study = Study(loaded.jobs, [], Options(resamples=200))
    plain_study.resample_cache.update({"bc2gm": None, "chemprot": None})  # force per-call
    plain = analyse(plain_study)
    assert cached.systems == plain.systems
    for a, b in zip(rows(cached.rq5, "chemprot") + rows(cached.multitask, "bc2gm"),
                    rows(plain.rq5, "chemprot") + rows(plain.multitask, "bc2gm")):
        assert a["paired_bootstrap"] == b["paired_bootstrap"]
    assert study_bootstrap.task_resamples(plain_study, "bc2gm") is None


def test_one_multi_task_experiment_with_overlapping_task_sets_is_several_systems(tmp_path):
    # phase2/phase3 declare their four combinations as one experiment: BC2GM trained with
    # ChemProt and BC2GM trained with BIOSSES are different systems and must not be merged
    write_study(tmp_path, Design(tasks=("bc2gm", "chemprot"), mt_gain={"bc2gm": 0.03}))
    write_study(tmp_path, Design(tasks=("bc2gm", "biosses"), rng_seed=7))
    loaded = load_results([tmp_path])
    study = Study(loaded.jobs, loaded.skipped, Options(resamples=50))
    systems = study.experiments("tiny", "multi_task")
    assert systems == ["mt_all[bc2gm+biosses]", "mt_all[bc2gm+chemprot]"]
    for name in systems:
        assert sorted(study.runs("tiny", "multi_task", name, "bc2gm")) == [1, 2, 3, 4, 5]
    assert not any("run twice" in n for n in study.notes)
    an = analyse(study)
    rows = {(f["multi_task_experiment"], r["task"])
            for f in an.rq5 for r in f["rows"] if r.get("multi_task_experiment")}
    assert ("mt_all[bc2gm+chemprot]", "chemprot") in rows
    assert ("mt_all[bc2gm+biosses]", "biosses") in rows


def test_methodology_pooled_comparison_is_students_t_over_every_compared_score(tmp_path):
    from scipy import stats as sps

    _, an = run(tmp_path, Design(mt_gain={"bc2gm": 0.03}, write_predictions=False,
                                 n_units=SMALL))
    fam = an.multitask[0]
    mt = [v for r in fam["rows"] for v in r["values_a"]]
    st = [v for r in fam["rows"] for v in r["values_b"]]
    pooled = fam["summary"]["methodology_pooled"]
    ref = sps.ttest_ind(mt, st)
    assert pooled["students_t"]["t"] == pytest.approx(ref.statistic, rel=1e-12)
    assert pooled["students_t"]["p"] == pytest.approx(ref.pvalue, rel=1e-12)
    sp = ((14 * np.var(mt, ddof=1) + 14 * np.var(st, ddof=1)) / 28) ** 0.5
    assert pooled["pooled_d"]["d"] == pytest.approx((np.mean(mt) - np.mean(st)) / sp)
    assert pooled["n_a"] == pooled["n_b"] == 15
    assert pooled["d_above_0_3"] is (pooled["pooled_d"]["d"] > 0.3)
