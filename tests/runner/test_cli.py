"""`python -m runner`: subcommands, output, and bad input (exit 2, one line, nothing written)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.cli import main
from runner.orchestrate.ledger import Ledger, Worker
from runner.orchestrate.local import run_plan
from runner.study.manifest import load_manifest
from runner.study.plan import build_plan

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "tests/assets/manifests"
SMALL = ASSETS / "small.toml"
DATA = ROOT / "data"   # run, plan and status need the data's SHA256SUMS (they read no file)
sys.path.insert(0, str(ASSETS))
from standin_job import standin_job


def snapshot_tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


BAD_CASES = {
    "missing file": (None, []),
    "empty": ("", []),
    "syntax": ("[study\nname = 1\n", []),
    "unknown key": (SMALL.read_text().replace("max_steps", "max_step"), []),
    "wrong type": (SMALL.read_text().replace("max_length = 64", "max_length = \"64\""), []),
    "out of range": (SMALL.read_text().replace("max_length = 64", "max_length = 0"), []),
    "unknown task": (SMALL.read_text().replace('"gad"]', '"gadd"]'), []),
    "unknown model": (SMALL.read_text().replace('["minilm"]', '["minilmm"]', 1), []),
    "empty seeds": (SMALL.read_text().replace("seeds = [1]", "seeds = []"), []),
    "duplicate name": (SMALL.read_text().replace('name = "multi"', 'name = "single"'), []),
    "bad reference": (SMALL.read_text().replace('reference = "multi"', 'reference = "m"'), []),
    "non-multi reference": (SMALL.read_text().replace('reference = "multi"',
                                                      'reference = "single"'), []),
    "bad budget": (SMALL.read_text(), ["--time-budget", "soon"]),
    # issue 25: each was a traceback or a usage block, or ran away
    "negative budget": (SMALL.read_text(), ["--time-budget", "-5s"]),
    "too many workers": (SMALL.read_text(), ["--workers", "100000"]),
    "nested 5000 deep": ("x = " + "[" * 5000 + "]" * 5000 + "\n", []),
    "5 MB value": (SMALL.read_text().replace('name = "small"', f'name = "{"x" * 5_000_000}"'),
                   []),
    "empty results dir": (SMALL.read_text(), ["--results-dir", ""]),
}


@pytest.mark.parametrize("case,command", [(c, cmd) for c in sorted(BAD_CASES)
                                          for cmd in ("run", "plan", "status")
                                          if cmd == "run" or not BAD_CASES[c][1]])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, command, tmp_path, capsys):
    text, extra = BAD_CASES[case]
    manifest = tmp_path / "m.toml"
    if text is not None:
        manifest.write_text(text)
    before = snapshot_tree(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path)   # the default results folder is relative to the working folder
    try:
        args = [str(manifest), "--results-dir", str(tmp_path / "res"),
                "--data-dir", str(tmp_path / "data"), *extra]
        rc = main(args if command == "run" else [command, *args])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert "Traceback" not in err and len(err) < 1200   # a 5 MB value is cut
    assert snapshot_tree(tmp_path) == before


def test_bad_input_from_a_real_process_has_no_traceback(tmp_path):
    bad = tmp_path / "m.toml"
    bad.write_text(SMALL.read_text().replace("max_steps", "max_step"))
    proc = subprocess.run([sys.executable, "-m", "runner", str(bad), "--results-dir",
                           str(tmp_path / "res")], check=False, capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (f"error: {bad}:9: defaults.max_step: unknown key (did you "
                                   f"mean 'max_steps'?); expected one of: "
                                   + proc.stderr.split("expected one of: ")[1].strip())
    assert not (tmp_path / "res").exists()


def test_help_names_every_command_and_exit_code(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for word in ("run", "plan", "status", "prepare", "time budget", "3"):
        assert word in out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for option in ("--results-dir", "--data-dir", "--time-budget", "--retry-failed",
                   "--worker-id"):
        assert option in out


def test_plan_prints_jobs_counts_and_total(tmp_path, capsys):
    assert main(["plan", str(SMALL), "--data-dir", str(DATA),
                 "--results-dir", str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    plan = build_plan(load_manifest(SMALL), DATA)
    for job in plan.jobs:
        assert job.job_id in out
    assert out.splitlines()[0].split() == ["job_id", "experiment", "strategy", "model", "tasks",
                                           "seed", "depends_on", "state"]
    assert "per strategy: single_task 2, multi_task 1, token_controlled 2" in out
    assert "per state: pending 2, ready 3" in out and "total: 5 jobs" in out
    assert not (tmp_path / "res").exists()


def test_status_shows_progress_and_the_run_command_is_the_default(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.delenv("STANDIN_LOG", raising=False)
    monkeypatch.setenv("STANDIN_SLEEP_S", "0.001")
    res = tmp_path / "res"
    plan = build_plan(load_manifest(SMALL), DATA)
    ledger = Ledger(res)
    claim = ledger.try_claim(plan.jobs[0].job_id, Worker("gpu0"), None)
    ledger.heartbeat(claim, {"step": 50, "total_steps": 200, "tokens": 12345,
                             "elapsed_s": 100.0})
    args = [str(SMALL), "--data-dir", str(DATA), "--results-dir", str(res)]
    assert main(["status", *args]) == 0
    out = capsys.readouterr().out
    assert "per state: pending 2, ready 2, running 1" in out
    line = next(ln for ln in out.splitlines() if plan.jobs[0].job_id in ln)
    # 300 s at the heartbeat, counting down since (runner.observe.progress.status_eta),
    # written as every duration of the status screen is (runner.observe.progress.fmt_duration)
    assert "step 50/200" in line and "tokens 12345" in line and \
        ("ETA 5 min," in line or "ETA 4 min," in line)
    assert re.search(r"heartbeat \d+ s ago", line), line
    assert "worker gpu0" in line
    ledger.release(claim)
    assert run_plan(plan, res, job_fn=standin_job, out=lambda m: None, poll_s=0.05) == 0
    t0 = time.monotonic()
    assert main(args) == 0          # a path first means `run`; everything is done already
    assert time.monotonic() - t0 < 5
    assert "all 5 jobs done" in capsys.readouterr().out
    assert main(["status", *args]) == 0
    assert "per state: done 5" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["status"], ["plan"], ["--help"], ["run", "--help"]])
# --help: argparse itself ignores a failed write of the help and exits 0
def test_a_closed_stdout_ends_any_command_quietly_with_exit_1(command, tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)   # the reader is gone before the first line, as `| head -2` can be
    args = command if "--help" in command else [
        *command, str(SMALL), "--data-dir", str(DATA), "--results-dir", str(tmp_path / "r")]
    try:
        proc = subprocess.run([sys.executable, "-m", "runner", *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60,
                              check=False)
    finally:
        os.close(write_end)
    assert proc.stderr == ""          # no traceback, no "Exception ignored ... BrokenPipe"
    assert proc.returncode == (0 if "--help" in command else 1)
    assert not (tmp_path / "r").exists()


def test_a_closed_stdout_during_run_gives_the_claimed_job_back(tmp_path, monkeypatch):
    monkeypatch.delenv("STANDIN_LOG", raising=False)
    res = tmp_path / "res"
    plan = build_plan(load_manifest(SMALL), tmp_path)

    def closed_pipe(msg):
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError):
        run_plan(plan, res, job_fn=standin_job, out=closed_pipe, poll_s=0.05)
    snap = Ledger(res).snapshot(j.job_id for j in plan.jobs)
    first = plan.jobs[0].job_id
    assert set(snap.claims) == {first} and snap.claims[first].status == "released"
    assert not snap.done    # stopped at its first line of output, before running anything


def _under_a_file(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "notes.txt").write_text("x")
    return tmp_path / "notes.txt" / "res", f"{tmp_path / 'notes.txt'} is a file, not a folder"


def _a_file(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "notes.txt").write_text("x")
    return tmp_path / "notes.txt", "is a file, not a folder"


def _in_proc(tmp_path: Path) -> tuple[Path, str]:
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    return Path("/proc/mtl-runner-test/res"), "cannot create a folder in /proc"


@pytest.mark.parametrize("where", [_under_a_file, _a_file, _in_proc])
@pytest.mark.parametrize("command", ["run", "plan", "status"])
def test_a_results_dir_that_cannot_be_a_folder_is_one_line_exit_2(command, where, tmp_path,
                                                                    capsys):
    res, expected = where(tmp_path)
    before = snapshot_tree(tmp_path)
    rc = main([command, str(SMALL), "--data-dir", str(ROOT / "data"), "--results-dir", str(res)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {res}: --results-dir: {expected}"), err
    assert snapshot_tree(tmp_path) == before


@pytest.mark.parametrize("command", ["run", "plan", "status"])
def test_a_manifest_results_path_that_is_a_file_is_reported_at_its_line(command, tmp_path,
                                                                         capsys):
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    manifest = tmp_path / "m.toml"
    manifest.write_text(SMALL.read_text().replace(
        'name = "small"\n', f'name = "small"\nresults = "{tmp_path / "passwd"}"\n'))
    line = manifest.read_text().splitlines().index(f'results = "{tmp_path / "passwd"}"') + 1
    rc = main([command, str(manifest), "--data-dir", str(ROOT / "data")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == (f"error: {manifest}:{line}: study.results: {tmp_path / 'passwd'}: is a file, "
                   "not a folder\n")



def _ghost_manifest(tmp_path: Path, everywhere: bool) -> tuple[Path, int]:
    """SMALL with a [models] alias that no machine has; (manifest, the alias's line)."""
    text = SMALL.read_text().replace(
        "[study]", '[models]\nghost = "nobody/no-such-model"\n\n[study]', 1)
    text = text.replace('["minilm"]', '["ghost"]', -1 if everywhere else 1)
    manifest = tmp_path / "ghost.toml"
    manifest.write_text(text)
    return manifest, text.splitlines().index('ghost = "nobody/no-such-model"') + 1


@pytest.mark.parametrize("flags", [[], ["--workers", "2"], ["--executor", "ray"]])
def test_a_model_that_cannot_be_had_ends_the_run_before_any_job_is_claimed(
        flags, tmp_path, capsys, monkeypatch):
    """Issue 11.8: offline, each job retried the hub and failed in turn; now every executor
    stops at once with exit 2 and one line: alias, what was tried, manifest line, what to do."""
    import runner.study.models as registry

    monkeypatch.setattr(registry, "hub_offline", lambda: True)
    manifest, line = _ghost_manifest(tmp_path, everywhere=True)
    res = tmp_path / "res"
    t0 = time.monotonic()
    rc = main([str(manifest), "--data-dir", str(DATA), "--results-dir", str(res), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {manifest}:{line}: models.ghost: model 'ghost' cannot be had "
                          f"here: tried hub id nobody/no-such-model: not in the Hugging Face "
                          f"cache, and HF_HUB_OFFLINE=1 forbids fetching it; set "
                          f"HF_HUB_OFFLINE=0 "), err
    assert 'point the alias at a local folder: [models] ghost = "/path/to/folder"' in err
    assert not res.exists()                  # no ledger, no claim, no job folder
    assert time.monotonic() - t0 < 10


def test_plan_shows_per_model_whether_it_resolves_here(tmp_path, capsys, monkeypatch):
    import runner.study.models as registry

    monkeypatch.setattr(registry, "hub_offline", lambda: True)
    manifest, _ = _ghost_manifest(tmp_path, everywhere=False)
    assert main(["plan", str(manifest), "--data-dir", str(DATA),
                 "--results-dir", str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out.splitlines()
    models = out[out.index("models (from their files; `run` loads each config and tokenizer "
                           "first):") + 1:out.index("design check")]
    assert models[0] == ("  ghost   MISSING: hub id nobody/no-such-model: not in the Hugging "
                         "Face cache, and HF_HUB_OFFLINE=1 forbids fetching it")
    assert models[1].startswith("  minilm  ok: local folder ") and len(models) == 2
    assert not (tmp_path / "res").exists()


def test_plan_loads_no_model_library(tmp_path):
    """`runner plan` is benchmarked at 10,000 jobs: its model lines come from files only."""
    code = ("import sys; from runner.cli import main; "
            f"rc = main(['plan', {str(SMALL)!r}, '--data-dir', {str(DATA)!r}, "
            f"'--results-dir', {str(tmp_path / 'r')!r}]); "
            "assert rc == 0 and 'transformers' not in sys.modules, rc")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "minilm  ok: local folder" in proc.stdout


@pytest.mark.parametrize("argv, needle", [
    (["contamination", "--tasks", "bc2gm,nope", "--out", "c.json"],
     "error: --tasks: unknown task 'nope'; known:"),
    (["contamination", "--n", "0", "--tasks", "gad", "--out", "c.json"],
     "error: --n: expected n >= 1, got 0"),
    (["similarity", "--tasks", "gad"], "error: --out: --tasks needs --out FILE"),
    (["prepare", "--source", "/nonexistent", "--out", "d"],
     "error: /nonexistent: source folder missing"),
])
def test_module_commands_bad_input_is_one_line_exit_2(argv, needle, tmp_path, capsys,
                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)   # where a relative --out (or a default one) would land
    data = [] if argv[0] == "prepare" else ["--data-dir", str(DATA)]
    assert main(argv + data) == 2
    err = capsys.readouterr().err
    assert err.startswith(needle) and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_similarity_takes_tasks_comma_or_space_separated(tmp_path, capsys):
    for name, tasks in (("comma", ["bc2gm,gad"]), ("space", ["bc2gm", "gad"])):
        out = tmp_path / f"{name}.json"
        assert main(["similarity", "--tasks", *tasks, "--data-dir", str(DATA),
                     "--out", str(out)]) == 0
        assert f"wrote {out} (2 tasks" in capsys.readouterr().out
    assert (tmp_path / "comma.json").read_bytes() == (tmp_path / "space.json").read_bytes()


def test_a_command_loads_only_its_own_module():
    """`status` and `--help` do not wait for prepare's and contamination's numpy/pyarrow."""
    code = ("import sys; from runner.cli import build_parser; "
            "args = build_parser().parse_args(['status', 'm.toml']); "
            "print(args.handler.__name__, sorted(m for m in ('runner.data.prepare', "
            "'runner.data.contamination', 'runner.recipes.similarity', 'runner.cli.data', "
            "'runner.cli.run', 'pyarrow') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["status_command", "[]"]


def _one_line(argv: list[str], capsys, cwd: Path) -> str:
    """Run ``python -m runner ARGV`` in ``cwd``; it must end with exit 2 and one line."""
    before = os.getcwd()
    os.chdir(cwd)
    try:
        rc = main(argv)
    finally:
        os.chdir(before)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def test_hostile_flags_and_manifests_get_their_own_one_line(tmp_path, capsys):
    """Issue 25's tracebacks and usage blocks, each now one line saying what is wrong."""
    m = tmp_path / "m.toml"
    m.write_text(SMALL.read_text())
    res = ["--results-dir", str(tmp_path / "res"), "--data-dir", str(DATA)]
    assert _one_line([str(m), *res, "--time-budget", "-5s"], capsys, tmp_path) == (
        "error: --time-budget: expected a positive duration, got '-5s'")
    assert _one_line([str(m), *res, "--workers", "100000"], capsys, tmp_path).startswith(
        "error: --workers: 100000 workers is more than this machine has (")
    assert _one_line([str(m), "--results-dir", "", "--data-dir", str(DATA)], capsys,
                     tmp_path) == ("error: --results-dir: empty path (leave --results-dir out "
                                   "for the manifest's [study] results)")
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    assert _one_line(["plan", str(deep)], capsys, tmp_path).startswith(
        f"error: {deep}: TOML nested too deep")
    big = tmp_path / "big.toml"
    big.write_text(SMALL.read_text().replace('name = "small"', f'name = "{"x" * 5_000_000}"'))
    line = _one_line(["plan", str(big), *res], capsys, tmp_path)
    assert line.startswith(f"error: {big}:") and len(line) < 1100
    assert line.endswith(" characters)") and "... (cut: 5,00" in line
    # the two branches of the workers bound
    from runner.orchestrate.workers import check_workers
    check_workers(4, gpus=[], cores=4)
    check_workers(100000, allow_more=True, gpus=[], cores=4)
    with pytest.raises(Exception, match="5 workers is more than this machine has"):
        check_workers(5, gpus=[], cores=4)
    check_workers(5, gpus=["0", "1", "2", "3", "4"], cores=4)   # one per GPU is fine


def test_a_results_folder_that_is_the_data_or_leads_nowhere_is_refused(tmp_path, capsys):
    m = tmp_path / "m.toml"
    m.write_text(SMALL.read_text().replace('name = "small"', 'name = "small"\nresults = "data"'))
    (tmp_path / "data").symlink_to(DATA)
    for command in ("run", "plan", "status"):
        assert _one_line([command, str(m)], capsys, tmp_path) == (
            f"error: {m}:5: study.results: data: is the data folder (data); give the study "
            "its own results folder")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for command in ("run", "plan", "status"):
        assert _one_line([command, str(SMALL), "--results-dir", str(tmp_path / "loop"),
                          "--data-dir", str(DATA)], capsys, tmp_path) == (
            f"error: {tmp_path / 'loop'}: --results-dir: a symbolic link loop (too many levels "
            "of symbolic links)")
        assert _one_line([command, str(SMALL), "--results-dir", str(tmp_path / "dangling"),
                          "--data-dir", str(DATA)], capsys, tmp_path) == (
            f"error: {tmp_path / 'dangling'}: --results-dir: a symbolic link to "
            f"{tmp_path / 'nowhere'}, which does not exist")
    # the other branch: a results folder of its own plans
    assert main(["plan", str(SMALL), "--results-dir", str(tmp_path / "res"),
                 "--data-dir", str(DATA)]) == 0
