"""The per-job files beside result.json (held-out, evaluation): a file whose header does not
match its folder, or that is not JSON, is skipped with its path and the reason."""

import json

import pytest

from stats.read.evaluation import load_evaluations
from stats.read.heldout import load_heldout
from stats.read.results import load_results
from stats.read.schema import Malformed, check_header
from tests.stats.questions.test_rq2 import write_heldout, write_job


def test_check_header_names_the_wrong_key():
    assert check_header({"schema": "x/1", "job_id": "j"}, "x/1", "job_id", "j")
    with pytest.raises(Malformed, match="top level"):
        check_header([], "x/1", "job_id", "j")
    with pytest.raises(Malformed, match="schema: expected 'x/1', got 'y/1'"):
        check_header({"schema": "y/1", "job_id": "j"}, "x/1", "job_id", "j")
    with pytest.raises(Malformed, match="job_id: 'k' is not the enclosing job 'j'"):
        check_header({"schema": "x/1", "job_id": "k"}, "x/1", "job_id", "j")


def test_files_of_another_job_or_not_json_are_skipped(tmp_path):
    d = write_job(tmp_path, "mt1", strategy="multi_task", experiment="mt", tasks=["bc2gm"],
                  seed=1, trainable=10)
    write_heldout(d, "mt1", "s800", 1, 0.5)
    moved = d / "heldout" / "s800" / "seed2"
    moved.mkdir(parents=True)
    doc = json.loads((d / "heldout" / "s800" / "seed1" / "heldout.json").read_text())
    (moved / "heldout.json").write_text(json.dumps({**doc, "source_job_id": "other"}))
    (d / "evaluation").mkdir()
    (d / "evaluation" / "fp32.json").write_text("{not json")
    jobs = load_results([tmp_path]).jobs
    runs, skipped = load_heldout(jobs)
    assert [(r.task, r.seed) for r in runs] == [("s800", 1)]
    assert len(skipped) == 1 and skipped[0].path == str(moved / "heldout.json")
    assert "malformed held-out result: source_job_id" in skipped[0].reason
    evals, skipped = load_evaluations(jobs)
    assert evals == [] and skipped[0].reason.startswith("malformed evaluation: ")
