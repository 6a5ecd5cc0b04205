"""Issue 24: every primary interval printed beside a seed-level p agrees with it.

Tables 2 and 3 (and the per-task parity table) print Δ with an interval next to the paired
t p over seeds. On synthetic studies of known, borderline truth (gains near what 3-5 seeds
can detect), every printed interval must be the seed-level paired t-interval: it excludes 0
exactly when the printed unadjusted p is below alpha, never the other way round.
"""

import re

import pytest

from stats.core.study import Options
from stats.render.numbers import p_cell, pts
from stats.report import build_paper
from tests.stats.synthetic import Design, TCVariant, write_study
from tests.stats.test_report import strict_json

SMALL = {"bc2gm": 200, "chemprot": 150, "biosses": 40}
CELL = re.compile(r"([-+]?\d+\.\d) \[([-+]?\d+\.\d), ([-+]?\d+\.\d)\] & (\S+) / (\S+?)(\$\^|\s&)")


def _p(text: str) -> float:
    return 0.0 if text == "$<$0.001" else float(text)


@pytest.mark.parametrize("k", range(4))
def test_printed_primary_intervals_agree_with_their_unadjusted_p(tmp_path, k):
    alpha = (0.05, 0.05, 0.1, 0.01)[k]
    design = Design(seeds=tuple(range(1, 4 + k % 2 + 1)), n_units=SMALL, rng_seed=40 + k,
                    mt_gain={"bc2gm": 0.006, "chemprot": 0.012, "biosses": 0.02},
                    tc_gain={"bc2gm": 0.004, "chemprot": 0.0, "biosses": 0.015},
                    seed_sd=0.01, train_sd=0.006,
                    tc_variants=(TCVariant("tc"), TCVariant("tc_pt", "per_task")))
    write_study(tmp_path / "r", design)
    build_paper(tmp_path / "p", [tmp_path / "r"], Options(resamples=50, alpha=alpha))
    stats = strict_json(tmp_path / "p" / "statistics.json")
    rows = [r for f in stats["rq1"] + stats["rq5"] for r in f["rows"]
            if (r.get("paired_t") or {}).get("p") is not None]
    assert len(rows) == 9  # 3 tasks x (RQ1, RQ5 total, RQ5 per-task)
    decided = {True: 0, False: 0}
    for r in rows:
        ci, p = r["diff_interval"], r["paired_t"]["p"]
        assert ci["level"] == pytest.approx(1 - alpha)
        excludes = ci["low"] > 0 or ci["high"] < 0
        assert excludes == (p < alpha), (r["task"], ci, p)
        decided[excludes] += 1
    assert decided[True] and decided[False]  # both kinds occur: the check can fail
    printed = 0
    for name in ("table_multitask_comparison.tex", "table_rq5_token_controlled.tex",
                 "table_rq5_per_task_parity.tex"):
        text = (tmp_path / "p" / name).read_text()
        assert f"[{100 * (1 - alpha):g}\\% CI]" in text
        for line in text.splitlines():
            m = CELL.search(line)
            if not m:
                continue
            printed += 1
            lo, hi, p = float(m[2]), float(m[3]), _p(m[4])
            if lo != 0.0 and hi != 0.0 and p_cell(p) != f"{alpha:.3f}":
                assert (lo > 0 or hi < 0) == (p < alpha), line
            # and it is the seed-level interval and unadjusted p of a row
            assert any(m[2] == pts(r["diff_interval"]["low"], True)
                       and m[3] == pts(r["diff_interval"]["high"], True)
                       and m[4] == p_cell(r["paired_t"]["p"]) for r in rows), line
    assert printed == 9
