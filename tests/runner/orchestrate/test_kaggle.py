"""docs/kaggle_session.py: Kaggle-like sessions (copy the previous output in, run with a time
budget, leave the output for the next) complete a study with the results of one run."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from runner.study.manifest import load_manifest
from runner.study.plan import build_plan
from tests.runner.orchestrate.test_workers import (
    DATA,
    ROOT,
    assert_same_engine_results,
    results,
    tiny_reference,
)

sys.path.insert(0, str(ROOT / "docs"))
import kaggle_session


def read_only(folder: Path) -> None:
    """Like /kaggle/input: nothing below may be written."""
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames:
            os.chmod(Path(dirpath) / name, stat.S_IRUSR | stat.S_IRGRP)
        os.chmod(dirpath, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)


def writable(folder: Path) -> None:
    for dirpath, _, filenames in os.walk(folder):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(Path(dirpath) / name, 0o644)


def test_copy_missing_adds_files_and_never_overwrites(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "a" / "checkpoints").mkdir(parents=True)
    (src / "a" / "result.json").write_text("old")
    (src / "a" / "checkpoints" / "state.pt").write_bytes(b"x" * 10)
    (src / "a" / ".result.json.123.tmp").write_text("half")
    (dst / "a").mkdir(parents=True)
    (dst / "a" / "result.json").write_text("new")
    assert kaggle_session.copy_missing(src, dst) == 1
    assert (dst / "a" / "result.json").read_text() == "new"
    assert (dst / "a" / "checkpoints" / "state.pt").read_bytes() == b"x" * 10
    assert not (dst / "a" / ".result.json.123.tmp").exists()
    assert not list(dst.rglob("*.copying"))
    assert kaggle_session.copy_missing(src, dst) == 0


def test_find_previous_takes_the_attached_output_with_most_finished_jobs(tmp_path):
    assert kaggle_session.find_previous(tmp_path / "nothing", "tiny") is None
    older = tmp_path / "session-1" / "results" / "tiny"
    newer = tmp_path / "session-2" / "results" / "tiny"
    for folder, n in ((older, 1), (newer, 3)):
        (folder / "ledger").mkdir(parents=True)
        for i in range(n):
            (folder / f"job{i}").mkdir()
            (folder / f"job{i}" / "result.json").write_text("{}")
    (tmp_path / "other" / "tiny").mkdir(parents=True)            # no ledger: not results
    assert kaggle_session.find_previous(tmp_path, "tiny") == newer


def test_bad_manifest_is_exit_2(tmp_path, capsys):
    bad = tmp_path / "m.toml"
    bad.write_text("[study\n")
    assert kaggle_session.session(bad, input_root=tmp_path, results_root=tmp_path / "r",
                                  in_process=True) == 2
    assert "m.toml" in capsys.readouterr().err and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_three_short_sessions_equal_one_uninterrupted_run(tmp_path, tmp_path_factory):
    from runner.ml.checkpoint import list_checkpoints

    ref = tiny_reference(tmp_path_factory)
    plan = build_plan(load_manifest(ref["manifest"]), DATA)
    codes, mid_job = [], []
    output = None   # the previous session's /kaggle/working
    # Two short sessions that together cover well under the uninterrupted run's time
    # (a fifth of it each, at least 2 s), then one long enough to finish on a busy machine.
    short = f"{max(2.0, ref['seconds'] / 5):.1f}s"
    for i, budget in enumerate((short, short, "150s")):
        kaggle = tmp_path / f"session{i}"
        if output is not None:
            shutil.copytree(output, kaggle / "input" / f"session{i - 1}-output")
            read_only(kaggle / "input")
        try:
            rc = kaggle_session.session(ref["manifest"], time_budget=budget, workers="auto",
                                        input_root=kaggle / "input",
                                        results_root=kaggle / "working" / "results",
                                        data_dir=DATA, in_process=True)
        finally:
            writable(kaggle)
        codes.append(rc)
        output = kaggle / "working"
        study = output / "results" / "tiny"
        # jobs stopped in the middle: checkpoints kept, no result yet
        mid_job += [j.job_id for j in plan.jobs if not (study / j.job_id / "result.json")
                    .exists() and list_checkpoints(study / j.job_id / "checkpoints")]
    assert codes == [3, 3, 0], (codes, short)
    assert mid_job, "no session stopped a job mid-way: make the study longer"
    final = output / "results" / "tiny"
    assert_same_engine_results(ref["results"], final, plan)
    for jid in set(mid_job):   # those jobs resumed from their checkpoints
        assert "(resuming," in (final / jid / "log.txt").read_text()
    assert len(results(final, plan)) == len(plan.jobs)
    # the output of each session holds all earlier work: nothing was lost on the way
    done_per_session = [len(list((tmp_path / f"session{i}" / "working/results/tiny")
                                 .glob("*/result.json"))) for i in range(3)]
    assert done_per_session == sorted(done_per_session)
    assert json.loads((final / plan.jobs[0].job_id / "result.json").read_text())[
        "experiment_id"] == plan.jobs[0].job_id
