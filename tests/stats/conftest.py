"""Shared fixtures: synthetic studies turned into paper/ folders once per test module."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stats.synthetic import Design, write_study

REPO = Path(__file__).resolve().parents[2]
SMALL = {"bc2gm": 300, "chemprot": 200, "biosses": 40}

# run the CLI in a child and report which heavy modules it imported
CLI_PROBE = (
    "import runpy, sys, json\n"
    "sys.argv = ['python -m stats'] + sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module('stats', run_name='__main__')\n"
    "except SystemExit as e:\n"
    "    code = e.code\n"
    "print(json.dumps({'torch': 'torch' in sys.modules, 'runner': any(m == 'runner' or "
    "m.startswith('runner.') for m in sys.modules)}))\n"
    "sys.exit(code)\n")


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``python -m stats ARGS`` in ``cwd`` (where it looks for data/CONTAMINATION.json)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-c", CLI_PROBE, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="session")
def full_paper(tmp_path_factory):
    """An ST/MT/TC study (5 seeds): +3 points MT on bc2gm, a TC token shortfall on chemprot,
    one malformed result.json and one truncated predictions file; built by the CLI."""
    root = tmp_path_factory.mktemp("results")
    write_study(root, Design(mt_gain={"bc2gm": 0.03}, tc_token_scale={"chemprot": 0.8},
                             n_units=SMALL))
    st_biosses = next(p for p in root.glob("*/result.json")
                      if json.loads(p.read_text())["experiment_type"] == "single_task_baseline"
                      and json.loads(p.read_text())["tasks"] == ["biosses"])
    pq = st_biosses.parent / "predictions" / "biosses.parquet"
    pq.write_bytes(pq.read_bytes()[:50])
    # a result written before predictions digests (issue 25): its unreadable predictions
    # are skipped, not refused
    data = json.loads(st_biosses.read_text())
    del data["per_task"]["biosses"]["predictions_sha256"]
    st_biosses.write_text(json.dumps(data))
    bad = root / "broken"
    bad.mkdir()
    (bad / "result.json").write_text('{"experiment_id": "abc", "seed": ')
    out = tmp_path_factory.mktemp("paper")
    # run outside the repository: its data/CONTAMINATION.json is not this study's
    proc = run_cli(str(out), "--results", str(root), "--resamples", "200", cwd=out)
    return {"root": root, "out": out, "proc": proc, "truncated": pq,
            "malformed": bad / "result.json"}


def degenerate_study(root: Path) -> None:
    """Everything that must print n/a: one seed, identical scores, a task only one strategy
    ran, a pairing without counterpart, mixed tokenizers, no predictions."""
    write_study(root / "a", Design(tasks=("bc2gm", "chemprot"), seeds=(1, 2),
                                   tc_tokenizer={"chemprot": "ffff00001111"},
                                   write_predictions=False, n_units=SMALL))
    write_study(root / "b", Design(tasks=("biosses",), models=("solo",), seeds=(1,),
                                   strategies=("single_task",), n_units=SMALL))
    results = [(p, json.loads(p.read_text())) for p in (root / "a").glob("*/result.json")]
    # identical ST and MT scores on bc2gm in both seeds
    st = {d["seed"]: d for _, d in results
          if d["experiment_type"] == "single_task_baseline" and d["tasks"] == ["bc2gm"]}
    for p, d in results:
        if d["experiment_type"] == "multi_task":
            d["per_task"]["bc2gm"]["metrics"] = st[d["seed"]]["per_task"]["bc2gm"]["metrics"]
            p.write_text(json.dumps(d))
        # chemprot single-task missing entirely
        if d["experiment_type"] == "single_task_baseline" and d["tasks"] == ["chemprot"]:
            shutil.rmtree(p.parent)


@pytest.fixture(scope="session")
def degenerate_paper(tmp_path_factory):
    """paper/ built in-process from :func:`degenerate_study`."""
    from stats.core.study import Options
    from stats.report import build_paper

    root = tmp_path_factory.mktemp("degenerate")
    degenerate_study(root / "results")
    build_paper(root / "paper", [root / "results"], Options(resamples=100))
    return root / "paper"


@pytest.fixture(scope="session")
def full_scale_paper(tmp_path_factory):
    """The methodology's full design (4 encoders x 8 tasks x 4 multi-task sets x 2
    token-controlled experiments, 3 seeds; tests/stats/synthetic.full_study_design) turned
    into paper/ in-process, with few resamples: the layout at full scale (issue 27)."""
    import stats.report
    from stats.core.study import Options
    from stats.report import build_paper
    from tests.stats.figtext import texts_outside
    from tests.stats.synthetic import full_study_design

    root = tmp_path_factory.mktemp("full_scale")
    write_study(root / "results", full_study_design())
    save = stats.report.atomic_savefig

    def checked(fig, path, **kwargs):
        """Each figure the report writes, checked before it is saved (as the PNG)."""
        if Path(path).suffix == ".png":
            FIGURE_TEXTS_OUTSIDE[Path(path).stem] = texts_outside(fig)
        save(fig, path, **kwargs)

    stats.report.atomic_savefig = checked
    try:
        build_paper(root / "paper", [root / "results"], Options(resamples=50))
    finally:
        stats.report.atomic_savefig = save
    return root / "paper"


# figure stem -> texts that leave the image, for the figures full_scale_paper wrote
FIGURE_TEXTS_OUTSIDE: dict[str, list[str]] = {}


def flat(summary: str) -> str:
    """SUMMARY.txt with every indented line joined to the one before it: a line folded at
    160 characters (stats.render.summary.fold) reads as written, for substring checks."""
    return re.sub(r"\n +", " ", summary)
