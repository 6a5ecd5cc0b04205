"""benchmarks/verdict_error_rates.py: its baseline (the rule before issue 24) is the old rule,
and a tiny run counts the verdicts the analysis gives and prints every scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from stats.core.significance import EXPOSURE, GENUINE
from tests.benchmarks import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "verdict_error_rates.py"


@pytest.fixture(scope="module")
def ver():
    return load_script(SCRIPT)


def _row(mt_tc, p_tc, mt_st, p_st, holds=True):
    return {"parity_summary": {"holds": holds}, "mean_diff": mt_tc, "p_holm": p_tc,
            "mt_minus_st": {"mean_diff": mt_st, "p_holm": p_st}}


def test_old_rule_called_any_failure_to_reject_data_exposure(ver):
    assert ver.old_rule(_row(0.03, 0.01, 0.03, 0.01), 0.05) == GENUINE
    assert ver.old_rule(_row(0.03, 0.2, 0.03, 0.01), 0.05) == EXPOSURE  # the flaw
    assert ver.old_rule(_row(0.03, 0.2, 0.03, 0.2), 0.05) is None
    assert ver.old_rule(_row(0.03, 0.01, 0.03, 0.01, holds=False), 0.05) is None


def test_a_tiny_run_prints_every_scenario(ver, capsys):
    code = ver.main(["--studies", "3", "--equal-seeds", "4"])
    out = capsys.readouterr().out
    assert code in (0, 1)
    for head in ("null (MT = ST = TC): false GENUINE TRANSFER: 3 studies",
                 "MT − TC = +3 points (TC = ST): false DATA EXPOSURE on bc2gm: 3 studies",
                 "the issue's case, 3 seeds", "(power, not an error)"):
        assert head in out
    assert out.count("current rule: ") == 4 and out.count("old rule (baseline): ") == 4
    assert "goal (every error rate <= 5% per study): " in out
