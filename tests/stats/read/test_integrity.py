"""Nothing wrong is published (issue 25): the predictions are the source of truth, a system is
one configuration, a job is read from its own folder only; each refusal is one line and
``python -m stats`` exits 2 with nothing written.  Every case also runs untouched (the
other branch): the same folder builds its paper."""

import json
import os
import shutil
from pathlib import Path

import pytest

from mtl_contract.files import FileTooLarge, read_bounded
from stats.core.study import Options, Study
from stats.read.results import RefusedResults, load_results
from stats.report import build_paper
from tests.helpers import shared_tmp, unprivileged
from tests.stats.conftest import run_cli
from tests.stats.synthetic import Design, write_study

SMALL = {"bc2gm": 40, "chemprot": 40, "biosses": 20}


def small(root: Path, **kw) -> dict[str, dict]:
    """A two-seed ST / MT / TC study; {job_id: result.json dict}."""
    design = Design(tasks=("bc2gm", "biosses"), seeds=(1, 2), n_units=SMALL, **kw)
    ids = write_study(root, design)
    return {i: json.loads((root / i / "result.json").read_text()) for i in ids}


def of_type(results: dict[str, dict], etype: str, tasks=None) -> list[str]:
    return sorted(i for i, d in results.items() if d["experiment_type"] == etype
                  and (tasks is None or d["tasks"] == list(tasks)))


def edit(root: Path, job_id: str, fn) -> None:
    path = root / job_id / "result.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def refusals(root: Path) -> list[str]:
    with pytest.raises(RefusedResults) as info:
        build_paper(root.parent / "refused", [root], Options(resamples=20))
    assert not (root.parent / "refused").exists()   # nothing written
    return info.value.lines


def builds(root: Path) -> None:
    report = build_paper(root.parent / "paper", [root], Options(resamples=20))
    assert report["jobs"] > 0


def test_an_untouched_study_builds(tmp_path):
    small(tmp_path / "results")
    builds(tmp_path / "results")


def test_a_hand_edited_metric_is_refused_in_one_line(tmp_path):
    root = tmp_path / "results"
    results = small(root)
    (mt,) = of_type(results, "multi_task", ("bc2gm", "biosses"))[:1]
    edit(root, mt, lambda d: d["per_task"]["bc2gm"]["metrics"].update(recall=0.999))
    (line,) = refusals(root)
    assert line.startswith(f"{root / mt / 'result.json'}: job {mt}: per_task.bc2gm.metrics."
                           "recall = 0.999000 but its predictions give 0.")
    # the CLI: one line, exit 2, nothing written
    proc = run_cli(str(tmp_path / "cli"), "--results", str(root), "--resamples", "20",
                   cwd=tmp_path)
    assert proc.returncode == 2 and not (tmp_path / "cli").exists()
    assert proc.stderr.strip().splitlines()[-1] == f"error: {line}"


def test_a_best_weights_metric_is_checked_too(tmp_path):
    root = tmp_path / "results"
    results = small(root)
    tc = of_type(results, "token_controlled_baseline", ("biosses",))[0]
    edit(root, tc, lambda d: d["per_task"]["biosses"]["best_weights"]["metrics"].update(
        pearson=0.5))
    (line,) = refusals(root)
    assert f"job {tc}: per_task.biosses.best_weights.metrics.pearson = 0.500000" in line


def test_truncated_or_swapped_predictions_are_refused_by_their_digest(tmp_path):
    root = tmp_path / "results"
    results = small(root)
    st1, st2 = of_type(results, "single_task_baseline", ("bc2gm",))
    pq1 = root / st1 / "predictions" / "bc2gm.parquet"
    pq2 = root / st2 / "predictions" / "bc2gm.parquet"
    saved = pq1.read_bytes()
    pq1.write_bytes(saved[:-1])   # truncated by one byte
    (line,) = refusals(root)
    assert line.startswith(f"{pq1}: job {st1}, task bc2gm: its sha256 ")
    assert "is not the" in line and "result.json recorded" in line
    shutil.copy(pq2, pq1)         # another seed's predictions, a valid parquet
    (line,) = refusals(root)
    assert line.startswith(f"{pq1}: job {st1}, task bc2gm: its sha256 ")
    pq1.write_bytes(saved)
    builds(root)


def test_results_without_digests_are_still_checked_against_their_predictions(tmp_path):
    """Older results (before issue 25): no digest to check, but the metrics are recomputed
    from the predictions, so a swapped file is still caught (its metrics differ)."""
    root = tmp_path / "results"
    results = small(root, digests=False)
    assert all("predictions_sha256" not in d["per_task"][t] for d in results.values()
               for t in d["tasks"])
    builds(root)
    st1, st2 = of_type(results, "single_task_baseline", ("bc2gm",))
    shutil.copy(root / st2 / "predictions" / "bc2gm.parquet",
                root / st1 / "predictions" / "bc2gm.parquet")
    (line,) = refusals(root)
    assert f"job {st1}: per_task.bc2gm.metrics.f1 = " in line


def test_two_configurations_under_one_system_name_are_refused(tmp_path):
    root = tmp_path / "results"
    results = small(root)
    st1, st2 = of_type(results, "single_task_baseline", ("bc2gm",))
    edit(root, st2, lambda d: d["config"].update(learning_rate=5e-5))
    (line,) = refusals(root)
    assert line == (
        f"{root / st2 / 'result.json'}: jobs {st1} (seed 1) and {st2} (seed 2) are both "
        "tiny/st [bc2gm] but differ in config.learning_rate (2e-05 vs 5e-05): two "
        "configurations under one system name; give their results folders separately or "
        "rename one experiment")
    # a token-controlled job's target is its own reference's tokens (per seed): not a
    # second configuration
    tc = of_type(results, "token_controlled_baseline", ("bc2gm",))
    edit(root, st2, lambda d: d["config"].update(learning_rate=2e-5))
    edit(root, tc[1], lambda d: d["config"].update(target_tokens=1))
    builds(root)


def test_a_copied_a_duplicated_and_a_linked_result_are_refused(tmp_path):
    root = tmp_path / "results"
    results = small(root / "study")
    st = of_type(results, "single_task_baseline", ("bc2gm",))[0]
    shutil.copytree(root / "study" / st, root / "study" / "copy-of-job")
    (line,) = refusals(root)
    assert line.startswith(f"{root / 'study' / 'copy-of-job' / 'result.json'}: experiment_id "
                           f"'{st}' is not its folder's name 'copy-of-job'")
    shutil.rmtree(root / "study" / "copy-of-job")
    shutil.copytree(root / "study" / st, root / "again" / st)   # two results for one id
    (line,) = refusals(root)
    assert line == (f"{root / 'study' / st / 'result.json'}: a second result for job {st} "
                    f"(the first is {root / 'again' / st / 'result.json'}); keep one of them")
    shutil.rmtree(root / "again")
    # the same folder given twice is one result
    build_paper(tmp_path / "paper", [root, root / "study"], Options(resamples=20))
    # a linked result.json (here to /dev/zero) and a linked job folder are never read
    (root / "study" / "zero").mkdir()
    os.symlink("/dev/zero", root / "study" / "zero" / "result.json")
    outside = tmp_path / "outside"
    shutil.copytree(root / "study" / st, outside / st)
    os.symlink(outside / st, root / "linked")
    lines = refusals(root)
    assert f"{root / 'study' / 'zero' / 'result.json'}: a symbolic link (to /dev/zero)" in \
        "\n".join(lines)
    assert any(line.startswith(f"{root / 'linked'}: a symbolic link (to {outside / st})")
               for line in lines)


def test_predictions_named_outside_the_job_folder_are_refused(tmp_path):
    root = tmp_path / "results"
    results = small(root)
    st = of_type(results, "single_task_baseline", ("bc2gm",))[0]
    other = of_type(results, "single_task_baseline", ("bc2gm",))[1]
    edit(root, st, lambda d: d["per_task"]["bc2gm"].update(
        predictions=f"../{other}/predictions/bc2gm.parquet"))
    (line,) = refusals(root)
    assert line == (f"{root / st / 'result.json'}: per_task.bc2gm.predictions: "
                    f"'../{other}/predictions/bc2gm.parquet' resolves outside the job's folder")


def test_reads_are_bounded(tmp_path):
    with pytest.raises(FileTooLarge, match="not a regular file"):
        read_bounded("/dev/zero")
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 101)
    with pytest.raises(FileTooLarge, match="larger than 100 bytes"):
        read_bounded(big, limit=100)
    assert read_bounded(big, limit=101) == b" " * 101


def test_an_unreadable_job_folder_or_result_is_refused_as_non_root():
    """Run as uid nobody (root reads everything): the folder is named, never "skipped 0"."""
    with shared_tmp() as base:
        root = base / "results"
        results = small(root)
        for p in [root, *root.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        st1, st2 = of_type(results, "single_task_baseline", ("bc2gm",))
        assert unprivileged(lambda: load_results([root]).refused) == []   # readable: used
        (root / st1).chmod(0o000)
        (root / st2 / "result.json").chmod(0o000)
        lines = unprivileged(lambda: load_results([root]).refused)
        assert f"{root / st1}: cannot read this folder (Permission denied): its jobs would " \
               "be left out" in lines
        assert f"{root / st2 / 'result.json'}: cannot read it (Permission denied)" in lines


def test_a_results_folder_of_links_only_says_so(tmp_path):
    """No result.json read because every job folder is a link: the link is named, not "no
    result.json found"."""
    small(tmp_path / "real")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "study").symlink_to(tmp_path / "real")
    proc = run_cli(str(tmp_path / "p"), "--results", str(tmp_path / "results"), cwd=tmp_path)
    assert proc.returncode == 2 and not (tmp_path / "p").exists()
    assert proc.stderr.strip() == (f"error: {tmp_path / 'results' / 'study'}: a symbolic link "
                                   f"(to {tmp_path / 'real'}); a results folder must hold its "
                                   "jobs' own folders, not links")
    ok = run_cli(str(tmp_path / "p"), "--results", str(tmp_path / "real"), "--resamples",
                 "20", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_resamples_are_bounded_in_one_line(tmp_path):
    small(tmp_path / "results")
    proc = run_cli(str(tmp_path / "p"), "--results", str(tmp_path / "results"),
                   "--resamples", "100000000000", cwd=tmp_path)
    assert proc.returncode == 2 and not (tmp_path / "p").exists()
    assert proc.stderr.strip() == ("error: --resamples: must be between 1 and 1,000,000 (got "
                                   "100,000,000,000)")


def test_verify_reads_each_predictions_file_once(tmp_path):
    """The check and the bootstrap share one read (the Study caches the frames)."""
    root = tmp_path / "results"
    small(root)
    loaded = load_results([root])
    study = Study(loaded.jobs, loaded.skipped, Options(resamples=20))
    assert study.verify() == []
    job = loaded.jobs[0]
    task = job.tasks[0]
    assert study.predictions(job, task) is study.predictions(job, task)
