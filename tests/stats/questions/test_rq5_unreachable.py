"""RQ5 with token-controlled jobs the runner recorded as not run (issue 28: result.json
``skipped``, parity unreachable within the epoch cap): their comparisons read "not testable:
parity unreachable", never missing data.  Synthetic folders; the skipped documents are
written here from results/README.md, not from the stats code."""

import json
import shutil

from stats.core.analysis import analyse
from stats.core.significance import NOT_TESTABLE
from stats.core.study import Options, Study
from stats.read.results import load_results
from stats.report import build_paper
from tests.stats.synthetic import Design, write_study

SMALL = {"bc2gm": 300, "chemprot": 200}


def _skip(job_dir, epochs_needed=31.5, cap=20):
    """Replace a token-controlled job's result.json by the runner's not-run document."""
    data = json.loads((job_dir / "result.json").read_text())
    (task,) = data["tasks"]
    doc = {k: data[k] for k in ("experiment_id", "experiment_type", "experiment", "study",
                                "model", "model_name", "tokenizer", "seed", "tasks", "config")}
    ref = data["parity"]["reference_job"]
    doc.update({
        "skipped": {"reason": "parity_unreachable", "detail": f"needs {epochs_needed} epochs",
                    "epochs_needed": epochs_needed, "epoch_cap": cap,
                    "target_tokens": 10**7, "tokens_per_epoch": 10**7 / epochs_needed},
        "parity": {"mode": "total", "reference_job": ref, "target": "total",
                   "targets": {"total": 10**7, "best": None}, "target_tokens": 10**7,
                   "achieved_tokens": 0, "reached": False, "epochs_run": 0.0,
                   "epochs_needed": epochs_needed, "epoch_cap": cap,
                   "stopped_because": "parity_unreachable"},
        "token_count": 0, "tokens_per_task": {task: 0}, "per_task": {}})
    shutil.rmtree(job_dir)
    job_dir.mkdir()
    (job_dir / "result.json").write_text(json.dumps(doc))


def _tc_dirs(root, task, seeds=None):
    for d in sorted(root.iterdir()):
        data = json.loads((d / "result.json").read_text())
        if data["experiment_type"] == "token_controlled_baseline" and data["tasks"] == [task] \
                and (seeds is None or data["seed"] in seeds):
            yield d


def _rows(root):
    loaded = load_results([root])
    study = Study(loaded.jobs, loaded.skipped, Options(resamples=100), not_run=loaded.not_run)
    an = analyse(study)
    rows = {r["task"]: r for f in an.rq5 if f["model"] for r in f["rows"]}
    return loaded, rows


def test_a_skipped_task_is_not_testable_and_the_others_keep_their_verdicts(tmp_path):
    root = tmp_path / "r"
    write_study(root, Design(tasks=("bc2gm", "chemprot"), n_units=SMALL,
                             mt_gain={"bc2gm": 0.05}))
    _, before = _rows(root)
    for d in _tc_dirs(root, "chemprot"):
        _skip(d)
    loaded, rows = _rows(root)
    assert len(loaded.not_run) == 5 and not loaded.skipped   # read, not "malformed"
    assert rows["chemprot"]["verdict"] == NOT_TESTABLE
    assert "31.5 epochs of chemprot" in rows["chemprot"]["reason"]
    assert "cap of 20" in rows["chemprot"]["reason"]
    assert rows["bc2gm"]["verdict"] == before["bc2gm"]["verdict"]


def test_missing_jobs_are_not_called_unreachable(tmp_path):
    """The control: the same jobs simply absent (failed, not run yet) are not testable for
    that reason, never called unreachable."""
    root = tmp_path / "r"
    write_study(root, Design(tasks=("bc2gm", "chemprot"), n_units=SMALL))
    for d in _tc_dirs(root, "chemprot"):
        shutil.rmtree(d)
    loaded, rows = _rows(root)
    assert not loaded.not_run
    assert rows["chemprot"]["verdict"] == NOT_TESTABLE
    assert "unreachable" not in rows["chemprot"]["reason"]


def test_one_seed_unreachable_makes_the_row_not_testable(tmp_path):
    root = tmp_path / "r"
    write_study(root, Design(tasks=("bc2gm", "chemprot"), n_units=SMALL,
                             mt_gain={"bc2gm": 0.05}))
    for d in _tc_dirs(root, "bc2gm", seeds={3}):
        _skip(d, epochs_needed=20.4)
    _, rows = _rows(root)
    assert rows["bc2gm"]["verdict"] == NOT_TESTABLE
    assert "seeds 3" in rows["bc2gm"]["verdict_reason"]


def test_every_task_skipped_and_the_summary_says_so(tmp_path):
    root = tmp_path / "r"
    write_study(root, Design(tasks=("bc2gm", "chemprot"), n_units=SMALL))
    for task in ("bc2gm", "chemprot"):
        for d in _tc_dirs(root, task):
            _skip(d)
    _, rows = _rows(root)
    assert {r["verdict"] for r in rows.values()} == {NOT_TESTABLE}
    out = tmp_path / "paper"
    build_paper(out, [root], Options(resamples=50))
    summary = (out / "SUMMARY.txt").read_text()
    assert "not run: 10 token-controlled jobs" in summary
    assert NOT_TESTABLE in summary
    stats = json.loads((out / "statistics.json").read_text())
    assert len(stats["inputs"]["not_run"]) == 10 and not stats["inputs"]["skipped"]
