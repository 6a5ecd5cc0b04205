"""stats.read.results: good results parse; malformed or partial ones are listed with path and reason."""

import json

import pytest

from stats.fileio import StatsInputError
from stats.read.results import load_results, tidy
from tests.stats.synthetic import Design, write_study


@pytest.fixture()
def study(tmp_path):
    ids = write_study(tmp_path, Design(tasks=("bc2gm",), seeds=(1, 2), n_units={"bc2gm": 30}))
    return tmp_path, ids


def _edit(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_reads_every_job_and_one_row_per_job_and_task(study):
    root, ids = study
    loaded = load_results([root])
    assert sorted(j.job_id for j in loaded.jobs) == sorted(ids) and loaded.skipped == []
    frame = tidy(loaded.jobs)
    # 2 seeds x (ST + MT + TC), one task each
    assert len(frame) == 6 and set(frame["strategy"]) == {"single_task", "multi_task",
                                                           "token_controlled"}
    assert frame["token_efficiency"].notna().all() and "metric_precision" in frame.columns


def test_malformed_results_are_listed_and_skipped(study):
    root, ids = study
    types = {i: json.loads((root / i / "result.json").read_text())["experiment_type"] for i in ids}
    tc = [i for i in ids if types[i] == "token_controlled_baseline"][-1]
    ids = [i for i in ids if i != tc]
    (root / ids[0] / "result.json").write_text('{"experiment_id": ')  # truncated copy
    _edit(root / ids[1] / "result.json", lambda d: d.pop("per_task"))
    _edit(root / ids[2] / "result.json", lambda d: d.update(seed="one"))
    _edit(root / tc / "result.json", lambda d: d.pop("parity"))
    (root / "copy").mkdir()
    (root / "copy" / "result.json").write_text((root / ids[3] / "result.json").read_text())
    loaded = load_results([root])
    reasons = {s.path: s.reason for s in loaded.skipped}
    assert "unreadable JSON" in reasons[str(root / ids[0] / "result.json")]
    assert "per_task: missing" in reasons[str(root / ids[1] / "result.json")]
    assert "seed: expected int" in reasons[str(root / ids[2] / "result.json")]
    assert "parity: missing" in reasons[str(root / tc / "result.json")]
    # a copied job folder is refused (issue 25), the original still read
    (copied,) = loaded.refused
    assert copied.startswith(f"{root / 'copy' / 'result.json'}: experiment_id '{ids[3]}' is "
                             "not its folder's name 'copy'")
    assert len(loaded.jobs) == len(ids) - 3  # three malformed; the TC one is not in ids


def test_missing_results_folder_is_bad_input(tmp_path):
    with pytest.raises(StatsInputError, match="does not exist"):
        load_results([tmp_path / "nope"])


def test_unusable_predictions_say_why(tmp_path):
    import pandas as pd

    from stats.read.results import PredictionsUnavailable, TaskResult, read_predictions

    def check(frame, spec, match):
        path = tmp_path / "p.parquet"
        frame.to_parquet(path, index=False)
        tr = TaskResult("t", "f1", {"f1": 0.5}, 1, len(frame), spec, path)
        with pytest.raises(PredictionsUnavailable, match=match):
            read_predictions(tr)

    counts = {"kind": "counts"}
    check(pd.DataFrame({"unit_id": ["a"], "tp": [1], "fp": [0]}), counts, "missing columns")
    check(pd.DataFrame({"unit_id": ["a"], "tp": ["1"], "fp": [0], "fn": [0]}), counts,
          "not numeric")
    check(pd.DataFrame({"unit_id": ["a", "a"], "tp": [1, 1], "fp": [0, 0], "fn": [0, 0]}),
          counts, "not unique")
    classes = {"kind": "classes", "labels": ["x", "y"], "scored": [1]}
    check(pd.DataFrame({"unit_id": ["a"], "gold_id": [5], "pred_id": [0]}), classes,
          "outside stat_spec.labels")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    tr = TaskResult("t", "f1", {"f1": 0.5}, 1, 1, counts, tmp_path / "bad.parquet")
    with pytest.raises(PredictionsUnavailable, match="cannot read parquet"):
        read_predictions(tr)
    tr = TaskResult("t", "f1", {"f1": 0.5}, 1, 1, counts, tmp_path / "absent.parquet")
    with pytest.raises(PredictionsUnavailable, match="file missing"):
        read_predictions(tr)
