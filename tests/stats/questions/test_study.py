"""The study description's sections (data, single-task systems) as build_paper runs them."""

import json

from stats.core.study import Options
from stats.report import SECTIONS, build_paper
from tests.stats.synthetic import Design, write_study

SMALL = {"bc2gm": 300, "chemprot": 200, "biosses": 40}


def test_study_sections_describe_data_and_systems(tmp_path):
    write_study(tmp_path / "r", Design(tasks=("bc2gm",), seeds=(1, 2), n_units=SMALL,
                                       strategies=("single_task",)))
    mine = [s for s in SECTIONS if s.name in ("data", "single_task")]
    build_paper(tmp_path / "p", [tmp_path / "r"], Options(resamples=50), sections=mine)
    stats = json.loads((tmp_path / "p" / "statistics.json").read_text())
    assert [d["task"] for d in stats["datasets"]] == ["bc2gm"]
    assert {s["strategy"] for s in stats["systems"]} == {"single_task"}
    summary = (tmp_path / "p" / "SUMMARY.txt").read_text()
    assert "jobs read: 2 (single_task: 2)" in summary and "seeds: 1, 2" in summary
    assert (tmp_path / "p" / "table_dataset_statistics.tex").is_file()
    assert (tmp_path / "p" / "table_single_task.tex").is_file()
