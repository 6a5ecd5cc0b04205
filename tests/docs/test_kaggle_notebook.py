"""kaggle/mtl_study.ipynb runs top to bottom on CPU (nbclient) with a tiny manifest given as a
parameter (the notebook reads MTL_<NAME> environment variables): the GPU check in CPU mode,
the session under a time budget, status, the paper and the size check of the output folder
all run, and the results and the paper land in the output folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.runner.orchestrate.test_workers import build_tiny_bert, tiny_study

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "kaggle" / "mtl_study.ipynb"


def _notebook_libraries():
    """nbclient and nbformat (the dev extra): missing in CI is a failure, elsewhere a skip."""
    try:
        import nbclient
        import nbformat
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must execute the Kaggle notebook: {exc} (pip install -e '.[dev]')")
        pytest.skip(f"{exc}: pip install -e '.[dev]'")
    return nbclient, nbformat


def test_the_notebook_has_a_parameters_cell_and_a_skippable_install():
    _, nbformat = _notebook_libraries()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "MANIFEST" in tagged[0].source
    assert any("if INSTALL:" in c.source for c in nb.cells if c.cell_type == "code")
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # shipped clean


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom_on_cpu_with_a_tiny_manifest(tmp_path, monkeypatch):
    nbclient, nbformat = _notebook_libraries()
    model = build_tiny_bert(tmp_path / "tiny_bert")
    manifest = tiny_study(tmp_path, model, max_train=24, max_epochs=1)
    working = tmp_path / "working"
    for name, value in {"INSTALL": "0", "REPO_DIR": str(ROOT), "MANIFEST": str(manifest),
                        "WORKING": str(working), "INPUT_ROOT": str(tmp_path / "input"),
                        "SELFCHECK_DEVICE": "cpu", "SELFCHECK_DIR": str(tmp_path / "sc"),
                        "SELFCHECK_ARGS": "--models tiny --steps 2",
                        "TIME_BUDGET": "30m"}.items():
        monkeypatch.setenv(f"MTL_{name}", value)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))
    (tmp_path / "notebook_output.txt").write_text(text)   # what the notebook showed
    assert json.loads((working / "selfcheck.json").read_text())["ok"]
    assert json.loads((working / "throughput.json").read_text())["device"].startswith("CPU")
    assert "measured on CPU" in text                                   # the estimate cell
    results = working / "results" / "tiny"
    assert len(list(results.glob("*/result.json"))) == 5               # the study is done
    assert "exit code 0: the study is done" in text          # the session cell
    assert "per state: done 5" in text                        # the status cell
    assert "selfcheck: 8 of 8 checks passed" in text          # the GPU check, shown here
    assert (working / "paper" / "SUMMARY.txt").exists()
    assert "GiB of 20 GB" in text and text.rstrip().endswith("session exit code 0")
