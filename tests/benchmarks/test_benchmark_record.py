"""benchmarks/benchmark_record.py: every speed benchmark's result document says which code,
host, device and library versions made it, and goes where git ignores it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.benchmarks import load_script

REPO = Path(__file__).resolve().parents[2]
record = load_script(REPO / "benchmarks" / "benchmark_record.py")


def test_a_document_names_the_code_host_device_and_versions():
    doc = record.document("bootstrap", {"fast_s": 0.5}, device="CPU x, 1 thread(s)",
                          package="stats", goal_met=True, argv=["benchmarks/bootstrap.py"])
    assert doc["schema"] == record.SCHEMA and doc["benchmark"] == "bootstrap"
    assert doc["results"] == {"fast_s": 0.5} and doc["goal_met"] is True
    assert doc["device"] == "CPU x, 1 thread(s)" and doc["command"] == ["benchmarks/bootstrap.py"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True, check=False).stdout.strip()
    assert doc["commit"] == (head or None) and doc["dirty"] in (True, False, None)
    assert doc["host"]["cpus"] >= 1 and doc["host"]["platform"]
    import numpy  # noqa: F401  (imported, so recorded)
    assert doc["versions"]["python"] and "numpy" in record.versions()


def test_outside_git_the_commit_is_unknown_not_invented(monkeypatch):
    monkeypatch.setattr(record, "_git", lambda folder, *args: None)
    assert record.code_state("stats") == (None, None)


def test_the_default_output_is_under_the_ignored_folder(tmp_path, monkeypatch):
    doc = record.document("contamination", {"speedup": 5.0}, device="CPU", package="runner")
    path = record.default_path("contamination", "2026-12-07T06:55:01+00:00")
    assert path == REPO / "benchmarks" / "out" / "contamination-20261207T065501Z.json"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO, check=False)
    assert ignored.returncode == 0, "benchmarks/out/ must be ignored by git"
    monkeypatch.setattr(record, "OUT_DIR", tmp_path / "out")
    written = record.write(doc)
    assert written.parent == tmp_path / "out" and written.name.startswith("contamination-")
    assert json.loads(written.read_text()) == doc
    assert json.loads(record.write(doc, tmp_path / "x.json").read_text()) == doc
