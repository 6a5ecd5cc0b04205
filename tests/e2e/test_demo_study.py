"""The demo study end to end, as a user runs it: the shipped ``manifests/demo.toml`` (made
smaller: fewer examples, a few optimizer steps, and its ``minilm`` alias pointed at a tiny BERT
whose WordPiece vocabulary is trained on the shipped data, so that it takes seconds, not the
demo's minutes -- the README's demo command runs the real MiniLM), run by ``python -m runner``,
reported by ``python -m stats``, and run again as after an interruption.

What it checks across the layers that no unit test sees together: the plan's three strategies
become ten jobs whose result.json files carry what stats reads (experiment types, test metrics,
token counts), token-controlled jobs reach their multi-task reference's token count, the paper
folder gets its tables, figures and SUMMARY.txt, and a second run changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import build_tiny_bert

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _tiny_bert(path: Path) -> Path:
    data = ROOT / "data"
    corpus = [" ".join(t) for t in pd.read_parquet(data / "bc2gm" / "train.parquet")
              ["tokens"].head(400)]
    corpus += list(pd.read_parquet(data / "gad" / "train.parquet")["text"].head(400))
    return build_tiny_bert(path, corpus, vocab_size=300)


def _small_demo(tmp_path: Path) -> Path:
    text = (ROOT / "manifests" / "demo.toml").read_text(encoding="utf-8")
    assert not re.search(r"^\[models\]", text, re.MULTILINE), "update this test"
    text += f'\n[models]\nminilm = "{_tiny_bert(tmp_path / "tiny_bert").as_posix()}"\n'
    for old, new in (("max_train_examples = {bc2gm = 400, gad = 200}",
                      "max_train_examples = {bc2gm = 48, gad = 48}\nmax_steps = 4"),
                     ("max_eval_examples = 100", "max_eval_examples = 24"),
                     ("eval_every = 25", "eval_every = 2")):
        assert old in text, f"demo.toml no longer says {old!r}: update this test"
        text = text.replace(old, new)
    manifest = tmp_path / "demo_small.toml"
    manifest.write_text(text, encoding="utf-8")
    return manifest


def _python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900, check=False)


def _results(results: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in results.glob("*/result.json")}


def test_demo_study_runs_reports_and_reruns_as_a_no_op(tmp_path):
    manifest, results, paper = _small_demo(tmp_path), tmp_path / "results", tmp_path / "paper"

    run = _python("-m", "runner", str(manifest), "--results-dir", str(results), cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]

    status = _python("-m", "runner", "status", str(manifest), "--results-dir", str(results),
                     "--json", cwd=ROOT)
    assert status.returncode == 0, status.stderr[-2000:]
    state = json.loads(status.stdout)
    assert state["total"] == 10 and state["counts"] == {"done": 10} and not state["running"]

    done = _results(results)
    assert len(done) == 10
    by_type: dict[str, list[dict]] = {}
    for r in done.values():
        by_type.setdefault(r["experiment_type"], []).append(r)
    assert {k: len(v) for k, v in by_type.items()} == {
        "single_task_baseline": 4, "multi_task": 2, "token_controlled_baseline": 4}
    for r in done.values():
        for task in r["tasks"]:
            score = r["per_task"][task]["metrics"]
            assert score and all(isinstance(v, float) for v in score.values()), (task, score)
            assert (results / r["experiment_id"] / r["per_task"][task]["predictions"]).exists()
    # parity = "total": each token-controlled job trains until it has seen its seed's
    # multi-task job's real tokens (at most one batch past the target)
    multi = {r["seed"]: r["token_count"] for r in by_type["multi_task"]}
    for r in by_type["token_controlled_baseline"]:
        target = r["config"]["target_tokens"]
        assert target == multi[r["seed"]]
        assert target <= r["token_count"] < target + 16 * 128

    report = _python("-m", "stats", str(paper), "--results", str(results),
                     "--resamples", "200", cwd=ROOT)
    assert report.returncode == 0, report.stderr[-3000:]
    for name in ("SUMMARY.txt", "all_results.csv", "statistics.json",
                 "table_single_task.tex", "table_multitask_comparison.tex",
                 "table_rq5_token_controlled.tex"):
        assert (paper / name).stat().st_size > 0, name
    assert list(paper.glob("**/*.pdf")) and list(paper.glob("**/*.png"))
    summary = (paper / "SUMMARY.txt").read_text(encoding="utf-8")
    assert re.search(r"\bRQ5\b", summary) and "token" in summary.lower()
    csv_rows = (paper / "all_results.csv").read_text(encoding="utf-8").splitlines()
    assert len(csv_rows) == 1 + 4 + 2 * 2 + 4   # header, then one row per job and task

    before = {p: p.read_bytes() for p in results.glob("*/result.json")}
    again = _python("-m", "runner", str(manifest), "--results-dir", str(results), cwd=ROOT)
    assert again.returncode == 0, again.stderr[-2000:]
    assert {p: p.read_bytes() for p in results.glob("*/result.json")} == before
