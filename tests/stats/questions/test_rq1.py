"""RQ1's section as build_paper runs it: Table 2 and the SUMMARY.txt block, alone."""

import json

from stats.core.study import Options
from stats.report import SECTIONS, build_paper
from tests.stats.synthetic import Design, write_study

SMALL = {"bc2gm": 300, "chemprot": 200, "biosses": 40}


def test_rq1_section_alone(tmp_path):
    write_study(tmp_path / "r", Design(mt_gain={"bc2gm": 0.03}, n_units=SMALL,
                                       strategies=("single_task", "multi_task")))
    rq1 = [s for s in SECTIONS if s.name == "rq1"]
    build_paper(tmp_path / "p", [tmp_path / "r"], Options(resamples=100), sections=rq1)
    stats = json.loads((tmp_path / "p" / "statistics.json").read_text())
    (fam,) = stats["rq1"]
    bc2gm = next(r for r in fam["rows"] if r["task"] == "bc2gm")
    assert bc2gm["n"] == 5 and bc2gm["significant"] is True and bc2gm["mean_diff"] > 0.02
    summary = (tmp_path / "p" / "SUMMARY.txt").read_text()
    assert "RQ1: multi-task vs single-task fine-tuning" in summary
    assert "methodology 9.2, all 3 compared task(s) pooled" in summary
    assert "RQ2, RQ3, RQ4, RQ5: no analysis section is registered" in summary
    assert "\nbc2gm & f1 &" in (
        tmp_path / "p" / "table_multitask_comparison.tex").read_text()
