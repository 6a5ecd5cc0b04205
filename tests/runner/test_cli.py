"""`python -m runner`: subcommands, output, and bad input (exit 2, one line, nothing written)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.__main__ import main
from runner.executor import run_plan
from runner.ledger import Ledger, Worker
from runner.manifest import load_manifest
from runner.plan import build_plan

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "tests/assets/manifests"
SMALL = ASSETS / "small.toml"
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
    assert "Traceback" not in err
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
    assert main(["plan", str(SMALL), "--data-dir", str(tmp_path),
                 "--results-dir", str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    plan = build_plan(load_manifest(SMALL), tmp_path)
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
    plan = build_plan(load_manifest(SMALL), tmp_path)
    ledger = Ledger(res)
    claim = ledger.try_claim(plan.jobs[0].job_id, Worker("gpu0"), None)
    ledger.heartbeat(claim, {"step": 50, "total_steps": 200, "tokens": 12345,
                             "elapsed_s": 100.0})
    args = [str(SMALL), "--data-dir", str(tmp_path), "--results-dir", str(res)]
    assert main(["status", *args]) == 0
    out = capsys.readouterr().out
    assert "per state: pending 2, ready 2, running 1" in out
    line = next(ln for ln in out.splitlines() if plan.jobs[0].job_id in ln)
    assert "step 50/200" in line and "tokens 12345" in line and "ETA 5m00s" in line
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
        *command, str(SMALL), "--data-dir", str(tmp_path), "--results-dir", str(tmp_path / "r")]
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
