"""A non-editable install ships the tables' templates (templates/ -> stats.templates), and
stats finds them there when no templates/ folder sits beside the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_wheel_carries_every_template(tmp_path):
    import shutil

    pytest.importorskip("setuptools")
    src = tmp_path / "src"   # a copy, so the build leaves nothing in the checkout
    for name in ("pyproject.toml", "README.md"):
        src.mkdir(exist_ok=True)
        shutil.copy(REPO / name, src / name)
    for name in ("mtl_contract", "runner", "stats", "templates"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(src)], check=False, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.rpartition("/")[2] for n in names if n.startswith("stats/templates/")}
    assert shipped == {p.name for p in (REPO / "templates").glob("*.j2")}
    assert "runner/__main__.py" in names and "stats/report.py" in names
    # the shared contract and the command line: every module of both
    for pkg in ("mtl_contract", "runner/cli"):
        assert {p.relative_to(REPO).as_posix() for p in (REPO / pkg).glob("*.py")} <= names, pkg
    # every stats subpackage (pyproject's explicit package list) is in the wheel
    for sub in ("read", "core", "questions", "render"):
        assert {p.relative_to(REPO).as_posix() for p in (REPO / "stats" / sub).glob("*.py")} \
            <= names, sub


def test_stats_reads_the_shipped_copy_when_no_templates_folder_is_beside_it(tmp_path):
    import shutil

    installed = tmp_path / "site"
    shutil.copytree(REPO / "stats", installed / "stats",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "templates", installed / "stats" / "templates")
    code = ("import stats.render.latex as t; print(t.TEMPLATES); "
            "print(t.environment().get_template('table_single_task.tex.j2').filename)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=False,
                          capture_output=True, text=True, env={"PYTHONPATH": str(installed)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    where, template = proc.stdout.split()
    assert Path(where) == installed / "stats" / "templates"
    assert Path(template).parent == installed / "stats" / "templates"
