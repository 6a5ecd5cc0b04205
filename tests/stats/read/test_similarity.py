"""task_similarity.json (RQ4): the reader refuses what stats cannot use, naming the file."""

import json

import pytest

from stats.fileio import StatsInputError
from stats.read.similarity import find_similarity_for_jobs, load_similarity, similarity_value
from tests.stats.questions.test_rq2 import write_job
from tests.stats.questions.test_rq4 import TASKS, sim_doc


def test_load_similarity_checks(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(sim_doc()))
    assert load_similarity(good)["tasks"] == TASKS
    bad = sim_doc()
    bad["measures"]["label_jaccard"][0][1] = 0.3  # breaks symmetry
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(StatsInputError, match="symmetric"):
        load_similarity(p)
    bad = sim_doc()
    bad["measures"]["label_jaccard"] = [[1.0]]
    p.write_text(json.dumps(bad))
    with pytest.raises(StatsInputError, match="3 x 3"):
        load_similarity(p)
    p.write_text("{")
    with pytest.raises(StatsInputError, match="bad.json"):
        load_similarity(p)


def test_the_study_folders_file_is_found_and_read(tmp_path):
    from stats.read.results import load_results

    write_job(tmp_path / "s", "j1", strategy="single_task", experiment="st", tasks=["a"],
              seed=1, trainable=1)
    jobs = load_results([tmp_path]).jobs
    assert find_similarity_for_jobs(jobs) is None
    (tmp_path / "s" / "task_similarity.json").write_text(json.dumps(sim_doc()))
    path = find_similarity_for_jobs(jobs)
    assert path == tmp_path / "s" / "task_similarity.json"
    doc = load_similarity(path)
    assert similarity_value(doc, "label_jaccard", "a", "c") == 0.5
    assert similarity_value(doc, "label_jaccard", "a", "zz") is None
    assert similarity_value(doc, "no_such_measure", "a", "b") is None
