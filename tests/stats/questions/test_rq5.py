"""RQ5 (issue 12): one comparison per token-controlled system, shared seeds, parity not
reached, the verdict's branches and the sensitivity line, on synthetic result folders."""

import json
import shutil

import numpy as np
import pytest

from stats.core import significance as T
from stats.core.analysis import analyse
from stats.core.significance import EXPOSURE, GENUINE, NO_GAIN, NOT_TESTABLE
from stats.core.study import Options, Study
from stats.read.results import load_results
from stats.report import build_paper
from tests.stats.conftest import flat
from tests.stats.synthetic import (
    Design,
    TCVariant,
    seed_level_study,
    write_results,
    write_study,
)

SMALL = {"bc2gm": 300, "jnlpba": 300, "chemprot": 200, "biosses": 40}


def analysed(root, resamples=100):
    loaded = load_results([root])
    study = Study(loaded.jobs, loaded.skipped, Options(resamples=resamples))
    return study, analyse(study)


def family(an, tc):
    (fam,) = [f for f in an.rq5 if f["token_controlled_experiment"] == tc]
    return fam


def row(fam, task):
    (r,) = [r for r in fam["rows"] if r["task"] == task]
    return r


def test_two_token_controlled_experiments_on_one_multi_task_job_are_two_comparisons(tmp_path):
    # full_study.toml: token_controlled_total and token_controlled_per_task, one reference
    design = Design(tasks=("bc2gm", "chemprot"), mt_gain={"bc2gm": 0.03}, n_units=SMALL,
                    tc_variants=(TCVariant("tc_total", "total"),
                                 TCVariant("tc_per_task", "per_task", gain={"bc2gm": 0.03})))
    write_study(tmp_path / "r", design)
    study, an = analysed(tmp_path / "r")
    total, per_task = family(an, "tc_total"), family(an, "tc_per_task")
    assert (total["parity_mode"], per_task["parity_mode"]) == ("total", "per_task")
    for fam in (total, per_task):
        for task in ("bc2gm", "chemprot"):
            r = row(fam, task)  # nothing dropped: every seed of every task, one mode each
            assert r["n"] == 5 and {p["mode"] for p in r["parity"]} == {fam["parity_mode"]}
            assert r["parity_summary"]["holds"] is True and r["holm_family_size"] == 2
    # the per-task experiment's TC trained on bc2gm's share only, the total one on all of it
    assert row(per_task, "bc2gm")["tc_tokens_mean"] < row(total, "bc2gm")["tc_tokens_mean"]
    assert row(total, "bc2gm")["verdict"] == GENUINE
    # per-task parity has its own words (issue 24): equivalence there is same-task exposure
    assert row(per_task, "bc2gm")["verdict"] == T.TASK_EXPOSURE
    assert not [n for n in study.notes if "reference" in n]
    # ... and in the outputs: each mode its own table, SUMMARY counts kept apart
    build_paper(tmp_path / "p", [tmp_path / "r"], Options(resamples=50))
    t3 = (tmp_path / "p" / "table_rq5_token_controlled.tex").read_text()
    pt = (tmp_path / "p" / "table_rq5_per_task_parity.tex").read_text()
    # each parity mode its own table (issue 24), one float per model (issue 27), the
    # comparison named in its block's heading
    assert [x.split(" & ")[0] for x in t3.splitlines() if x.startswith("bc2gm &")] == ["bc2gm"]
    assert [x.split(" & ")[0] for x in pt.splitlines() if x.startswith("bc2gm &")] == ["bc2gm"]
    assert r"mt\_all vs tc\_total: target total" in t3 and "per\\_task" not in t3.split("\\midrule")[1]
    assert r"mt\_all vs tc\_per\_task: target" in pt and "tab:rq5_per_task_parity" in pt
    assert "Per-task token parity" in pt and "whole multi-task job" in t3
    assert "gain beyond same-task exposure" not in t3.split("\\bottomrule")[0]
    summary = flat((tmp_path / "p" / "SUMMARY.txt").read_text())
    assert "tiny bc2gm (f1, mt_all vs tc_total): verdict GENUINE TRANSFER" in summary
    assert "tiny bc2gm (f1, mt_all vs tc_per_task): verdict SAME-TASK EXPOSURE" in summary
    counts = next(x for x in summary.splitlines() if "total-parity verdicts:" in x)
    assert "same-task" not in counts and "genuine transfer: 1" in counts
    assert "per-task parity verdicts (a separate question, not counted above): " in summary
    both = next(x for x in summary.splitlines() if "both parity modes, tiny mt_all bc2gm" in x)
    assert "per-task parity reads SAME-TASK EXPOSURE" in both
    assert "total parity reads GENUINE TRANSFER" in both
    # MT's token column and efficiency count the same tokens in each mode
    for r in (row(per_task, "bc2gm"), row(total, "bc2gm")):
        assert r["mt_efficiency"] == pytest.approx(r["mt_mean"] / (r["mt_tokens_mean"] / 1e6),
                                                   rel=1e-6)
    stats = json.loads((tmp_path / "p" / "statistics.json").read_text())
    assert sorted(f["token_controlled_experiment"] for f in stats["rq5"]) == [
        "tc_per_task", "tc_total"]


def test_token_controlled_systems_of_one_task_and_different_task_sets_stay_apart(tmp_path):
    # phase3: one token_controlled experiment against four task sets of one multi_task one
    write_study(tmp_path, Design(tasks=("bc2gm", "chemprot"), mt_gain={"bc2gm": 0.03},
                                 n_units=SMALL, write_predictions=False))
    write_study(tmp_path, Design(tasks=("bc2gm", "biosses"), rng_seed=7, n_units=SMALL,
                                 write_predictions=False))
    study, an = analysed(tmp_path)
    tc = {s["experiment"]: s for s in an.systems
          if s["strategy"] == "token_controlled" and s["task"] == "bc2gm"}
    assert sorted(tc) == ["tc[bc2gm+biosses]", "tc[bc2gm+chemprot]"]
    assert all(s["seeds"] == [1, 2, 3, 4, 5] for s in tc.values())
    assert tc["tc[bc2gm+biosses]"]["mean"] != tc["tc[bc2gm+chemprot]"]["mean"]
    assert not [n for n in study.notes if "run twice" in n or "reference" in n]
    fam = family(an, "tc[bc2gm+chemprot]")
    assert fam["multi_task_experiment"] == "mt_all[bc2gm+chemprot]"
    assert row(fam, "bc2gm")["n"] == 5


def verdict_study(tmp_path, rng_seed=12, **kwargs):
    """Seed-level scores only: the verdict's inputs without predictions."""
    write_results(tmp_path, seed_level_study(np.random.default_rng(rng_seed), **kwargs))
    _, an = analysed(tmp_path)
    (fam,) = an.rq5
    return {r["task"]: r for r in fam["rows"]}


def test_each_branch_of_the_verdict_rule(tmp_path):
    rows = verdict_study(
        tmp_path / "a", tasks=("bc2gm", "jnlpba", "chemprot", "biosses"),
        base={"chemprot": 0.70}, mt_gain={"bc2gm": 0.03, "jnlpba": 0.03},
        tc_gain={"jnlpba": 0.03, "chemprot": -0.06},
        variant=TCVariant(short={"biosses": (20, 1024.0)}))
    assert rows["bc2gm"]["verdict"] == GENUINE
    assert rows["jnlpba"]["verdict"] == EXPOSURE
    # the issue's case: ST = MT = 0.70, TC = 0.64 over five seeds: MT beats TC by about
    # six points (significantly) but not ST, so nothing is left to call transfer
    chem = rows["chemprot"]
    assert chem["mean_diff"] > 0.04 and chem["p_holm"] < 0.01
    assert abs(chem["mt_minus_st"]["mean_diff"]) < 0.01 and chem["mt_minus_st"]["p_holm"] > 0.05
    assert chem["verdict"] == NO_GAIN and "no multi-task gain" in chem["verdict_reason"]
    # a TC job that stopped at its epoch cap: a row with the shortfall, never a missing one
    bio = rows["biosses"]
    assert bio["n"] == 5 and bio["verdict"] == NOT_TESTABLE
    assert bio["parity_summary"]["detail"].startswith(
        "parity not reached (gap 98.0%, 20 epochs of 1,024 needed) in 5 of 5 seeds")
    one = verdict_study(tmp_path / "b", tasks=("bc2gm",), seeds=(1,), mt_gain={"bc2gm": 0.05})
    assert one["bc2gm"]["verdict"] == NOT_TESTABLE and one["bc2gm"]["p_holm"] is None


def test_parity_not_reached_is_a_row_in_the_table_and_summary(tmp_path):
    design = Design(tasks=("bc2gm", "biosses"), seeds=(1, 2), n_units=SMALL,
                    tc_variants=(TCVariant(short={"biosses": (20, 1024.0)}),))
    write_study(tmp_path / "r", design)
    build_paper(tmp_path / "p", [tmp_path / "r"], Options(resamples=50))
    t3 = (tmp_path / "p" / "table_rq5_token_controlled.tex").read_text()
    bio = next(line for line in t3.splitlines() if line.startswith("biosses &"))
    assert r"\textbf{98.0\%}" in bio and "not testable" in bio
    assert r"parity not reached (gap 98.0\%, 20 epochs of 1,024 needed)" in t3
    summary = flat((tmp_path / "p" / "SUMMARY.txt").read_text())
    assert "parity not reached (gap 98.0%, 20 epochs of 1,024 needed) in 2 of 2 seeds" in summary
    assert "no token-controlled job references" not in summary


def test_rows_use_only_the_seeds_all_their_systems_share(tmp_path):
    # MT / TC on five seeds, ST on three: RQ1 and RQ5 show the same MT over seeds 1-3
    write_study(tmp_path / "r", Design(tasks=("bc2gm", "chemprot"), mt_gain={"bc2gm": 0.03},
                                       n_units=SMALL))
    for p in (tmp_path / "r").glob("*/result.json"):
        d = json.loads(p.read_text())
        if d["experiment_type"] == "single_task_baseline" and d["seed"] in (4, 5):
            shutil.rmtree(p.parent)
    _, an = analysed(tmp_path / "r")
    rq1 = next(r for f in an.multitask for r in f["rows"] if r["task"] == "bc2gm")
    rq5 = row(family(an, "tc"), "bc2gm")
    assert rq5["seeds"] == rq1["seeds"] == [1, 2, 3]
    assert rq5["mt_mean"] == pytest.approx(np.mean(rq1["values_a"]), abs=1e-15)
    assert rq5["st_mean"] == pytest.approx(np.mean(rq1["values_b"]), abs=1e-15)
    assert rq5["seeds_dropped"] == {"mt_all": [4, 5], "tc": [4, 5]}
    assert rq1["seeds_dropped"] == {"mt_all": [4, 5]}
    build_paper(tmp_path / "p", [tmp_path / "r"], Options(resamples=50))
    t3 = (tmp_path / "p" / "table_rq5_token_controlled.tex").read_text()
    line = next(x for x in t3.splitlines() if x.startswith("bc2gm"))
    assert line.startswith("bc2gm$^{") and "seeds 1--3}}" in t3  # the block's seeds
    assert "left out: mt\\_all seeds 4, 5; tc seeds 4, 5" in t3
    summary = flat((tmp_path / "p" / "SUMMARY.txt").read_text())
    assert "seeds 1–3 (left out, not run by every system: mt_all seeds 4, 5; tc seeds 4, 5)" \
        in summary


def test_sensitivity_line_reports_best_weights_and_the_other_target(tmp_path):
    # the manifest's target is "total"; a second experiment aims at the MT's tokens at its
    # best checkpoint. At its best-validation weights the TC catches up with MT on bc2gm.
    design = Design(tasks=("bc2gm", "chemprot"), mt_gain={"bc2gm": 0.03}, n_units=SMALL,
                    tc_variants=(TCVariant("tc", best_gain={"bc2gm": 0.03}),
                                 TCVariant("tc_best", target="best", gain={"bc2gm": 0.03})))
    write_study(tmp_path / "r", design)
    _, an = analysed(tmp_path / "r")
    main, other = row(family(an, "tc"), "bc2gm"), row(family(an, "tc_best"), "bc2gm")
    assert main["verdict"] == GENUINE and other["verdict"] == EXPOSURE
    # parity under target "best" is checked against the MT job's tokens_at_best
    assert other["parity_summary"]["holds"] is True
    assert other["mt_tokens_mean"] < main["mt_tokens_mean"]
    sens = main["sensitivity"]
    assert sens["best_weights"]["verdict"] == EXPOSURE and sens["changes"] is True
    assert [(o["token_controlled_experiment"], o["verdict"]) for o in sens["other_targets"]] \
        == [("tc_best", EXPOSURE)]
    steady = row(family(an, "tc"), "chemprot")["sensitivity"]
    assert steady["changes"] is False and steady["best_weights"]["verdict"] == NO_GAIN
    build_paper(tmp_path / "p", [tmp_path / "r"], Options(resamples=50))
    summary = flat((tmp_path / "p" / "SUMMARY.txt").read_text())
    line = next(x for x in summary.splitlines() if "sensitivity" in x and "tc_best" in x
                and "CHANGES" in x)
    assert "TC at its best-validation weights: data exposure (CHANGES" in line
    assert "parity target 'best' (tc_best): data exposure (CHANGES" in line


def test_the_rule_is_written_once_and_printed_in_summary_and_table(tmp_path):
    write_study(tmp_path / "r", Design(tasks=("bc2gm",), seeds=(1, 2), n_units=SMALL))
    build_paper(tmp_path / "p", [tmp_path / "r"], Options(resamples=20, alpha=0.01))
    rule = T.verdict_rule(0.01, 0.05, 0.01)
    summary = flat((tmp_path / "p" / "SUMMARY.txt").read_text())
    assert summary.count(rule) == 1
    from stats.render.tables import latex_escape
    assert latex_escape(rule) in (tmp_path / "p" / "table_rq5_token_controlled.tex").read_text()


def test_results_without_the_issue_12_fields_still_read(tmp_path):
    write_study(tmp_path, Design(tasks=("bc2gm",), seeds=(1, 2), issue12_fields=False,
                                 tc_variants=(TCVariant(target=None, best_gain=None),),
                                 n_units=SMALL, write_predictions=False))
    _, an = analysed(tmp_path)
    r = row(family(an, "tc"), "bc2gm")
    assert r["parity_summary"]["holds"] is True and family(an, "tc")["parity_target"] is None
    assert "not recorded" in r["sensitivity"]["best_weights"]["reason"]


def test_three_seeds_of_a_two_point_gain_read_inconclusive_not_data_exposure(tmp_path):
    """The issue's case (issue 24): true MT − TC = +2 points, MT − ST = +5, 3 seeds. Failing
    to show MT > TC is not evidence that MT = TC: the verdict is INCONCLUSIVE, with the
    interval and the seeds that would decide it, never DATA EXPOSURE."""
    reads = []
    for k in range(10):
        rows = verdict_study(tmp_path / str(k), tasks=("bc2gm", "chemprot"), seeds=(1, 2, 3),
                             mt_gain={"bc2gm": 0.05}, tc_gain={"bc2gm": 0.03},
                             seed_sd=0.014, train_sd=0.007, rng_seed=k)
        reads.append(rows["bc2gm"]["verdict"])
        r = rows["bc2gm"]
        if r["verdict"] == T.INCONCLUSIVE:
            eq = r["equivalence"]
            assert not eq["equivalent"] and eq["seeds_needed"] > 3
            assert f"about {eq['seeds_needed']} seeds" in r["verdict_reason"]
    assert EXPOSURE not in reads and T.INCONCLUSIVE in reads


def test_ten_seeds_with_mt_equal_to_tc_read_data_exposure(tmp_path):
    rows = verdict_study(tmp_path, tasks=("bc2gm", "chemprot"), seeds=tuple(range(1, 11)),
                         mt_gain={"bc2gm": 0.03}, tc_gain={"bc2gm": 0.03},
                         seed_sd=0.014, train_sd=0.005)
    r = rows["bc2gm"]
    assert r["verdict"] == EXPOSURE, r["verdict_reason"]
    assert r["equivalence"]["equivalent"] and r["equivalence"]["p"] < 0.05
    assert "inside ±1 points" in r["verdict_reason"]


def test_equivalence_margin_comes_from_the_command_line_or_the_manifest(tmp_path):
    from stats.__main__ import main

    write_results(tmp_path / "r", seed_level_study(
        np.random.default_rng(3), tasks=("bc2gm",), seeds=tuple(range(1, 11)),
        mt_gain={"bc2gm": 0.03}, tc_gain={"bc2gm": 0.03}, seed_sd=0.014, train_sd=0.005))
    manifest = tmp_path / "m.toml"
    manifest.write_text("[study]\nname = 'x'\nseeds = [1]\n\n[stats]\nequivalence_margin = 0.1\n")
    assert main([str(tmp_path / "p1"), "--results", str(tmp_path / "r"), "--resamples", "20",
                 "--manifest", str(manifest)]) == 0
    one = json.loads((tmp_path / "p1" / "statistics.json").read_text())
    assert one["options"]["equivalence_margin"] == pytest.approx(0.001)
    assert one["rq5"][0]["rows"][0]["verdict"] == T.INCONCLUSIVE  # ±0.1 point: too narrow
    assert main([str(tmp_path / "p2"), "--results", str(tmp_path / "r"), "--resamples", "20",
                 "--manifest", str(manifest), "--equivalence-margin", "2"]) == 0
    two = json.loads((tmp_path / "p2" / "statistics.json").read_text())
    assert two["rq5"][0]["rows"][0]["verdict"] == EXPOSURE
    assert "RQ5 equivalence margin ±2 points" in (tmp_path / "p2" / "SUMMARY.txt").read_text()
    manifest.write_text("[study]\nname = 'x'\nseeds = [1]\n\n[stats]\nequivalence_margin = -1\n")
    assert main([str(tmp_path / "p3"), "--results", str(tmp_path / "r"),
                 "--manifest", str(manifest)]) == 2
    assert not (tmp_path / "p3").exists()


# ------------------------------------------------------------------ issue 26: two controls
def two_controls(tmp_path, rng_seed=0):
    """MT gains 3 points on both tasks; the repeat control gains nothing (MT beats it on
    both); the text-matched control gains as much as MT on chemprot (text exposure explains
    that gain) and nothing on bc2gm (the labels do)."""
    design = Design(tasks=("bc2gm", "chemprot"), mt_gain={"bc2gm": 0.03, "chemprot": 0.03},
                    n_units=SMALL, rng_seed=rng_seed,
                    tc_variants=(TCVariant("tc_repeat"),
                                 TCVariant("tc_text", gain={"chemprot": 0.03}, control="text")))
    write_study(tmp_path, design)
    return analysed(tmp_path)


def test_the_text_control_is_its_own_labelled_comparison_never_pooled(tmp_path):
    from stats.core.controls import SUPERVISION, TEXT_EXPOSURE
    _, an = two_controls(tmp_path / "r")
    repeat, text = family(an, "tc_repeat"), family(an, "tc_text")
    assert (repeat["control"], text["control"]) == ("repeat", "text")
    assert row(repeat, "bc2gm")["verdict"] == row(repeat, "chemprot")["verdict"] == GENUINE
    assert row(text, "bc2gm")["verdict"] == SUPERVISION
    assert row(text, "chemprot")["verdict"] == TEXT_EXPOSURE
    # the sensitivity line compares like with like: no "changes" from the other control
    assert not row(text, "bc2gm")["sensitivity"]["other_targets"]
    build_paper(tmp_path / "p", [tmp_path / "r"], Options(resamples=50))
    t3 = (tmp_path / "p" / "table_rq5_token_controlled.tex").read_text()
    t_text = (tmp_path / "p" / "table_rq5_text_controlled.tex").read_text()
    assert "tc\\_repeat" in t3 and "tc\\_text" not in t3
    assert "tc\\_text" in t_text and "tc\\_repeat" not in t_text
    assert "text exposure" in t_text and "Text-matched control: TC fine-tunes" in t_text
    summary = (tmp_path / "p" / "SUMMARY.txt").read_text()
    repeat_block, text_block = summary.split("RQ5 (text-matched control)")[:2]
    assert "verdicts: genuine transfer: 2" in repeat_block
    assert "cross-task supervision: 1, text exposure: 1" in text_block
    assert "tc_text" not in repeat_block.split("RQ5: token-controlled")[1]
    assert ("both controls, tiny chemprot (mt_all vs tc_repeat and tc_text): MT beats its own "
            "data repeated but not the other tasks' text without labels") in text_block
    assert "both controls, tiny bc2gm (mt_all vs tc_repeat and tc_text): both controls agree" \
        in text_block
    stats = json.loads((tmp_path / "p" / "statistics.json").read_text())
    assert {c["task"]: c["text"]["verdict"] for c in stats["rq5_reconciled"]} == {
        "bc2gm": SUPERVISION, "chemprot": TEXT_EXPOSURE}
    from tests.stats.render.test_latex import compile_tables
    (tmp_path / "tex").mkdir()
    compile_tables(tmp_path / "p", tmp_path / "tex", ["table_rq5_text_controlled.tex"])


def test_a_study_with_only_the_text_control_says_so_in_the_repeat_block(tmp_path):
    write_study(tmp_path / "r", Design(tasks=("bc2gm",), mt_gain={"bc2gm": 0.03},
                                       n_units=SMALL, tc_variants=(TCVariant(
                                           "tc_text", control="text"),)))
    build_paper(tmp_path / "p", [tmp_path / "r"], Options(resamples=50))
    summary = (tmp_path / "p" / "SUMMARY.txt").read_text()
    repeat_block = summary.split("RQ5: token-controlled")[1].split("RQ5 (text-matched")[0]
    assert "no repeat-control token-controlled system among the results" in repeat_block
    assert "tc_text" not in repeat_block


def test_a_study_without_the_text_control_writes_what_it_wrote(tmp_path):
    write_study(tmp_path / "r", Design(tasks=("bc2gm",), mt_gain={"bc2gm": 0.03},
                                       n_units=SMALL))
    build_paper(tmp_path / "p", [tmp_path / "r"], Options(resamples=50))
    assert not (tmp_path / "p" / "table_rq5_text_controlled.tex").exists()
    assert "text-matched" not in (tmp_path / "p" / "SUMMARY.txt").read_text()
