"""ETAs: plain arithmetic, checked by hand; bars only on a terminal."""

from __future__ import annotations

import io
import time

import pytest

from runner.observe.progress import (
    JobProgress,
    RateMeter,
    fmt_duration,
    position,
    status_eta,
    status_rows,
    study_eta,
    study_line,
)


def test_position_prefers_tokens_for_token_controlled_jobs():
    assert position({"step": 10, "total_steps": 100}) == (10, 100, "steps")
    assert position({"step": 10, "total_steps": None, "tokens": 500,
                     "target_tokens": 2000}) == (500, 2000, "tokens")
    assert position({"phase": "test"}) is None


def test_rate_meter_counts_from_the_first_step_of_this_attempt():
    now = [100.0]
    meter = RateMeter(clock=lambda: now[0])
    now[0] = 110.0
    first = meter.annotate({"step": 40, "total_steps": 100})   # resumed at 40: no rate yet
    assert "eta_s" not in first and first["elapsed_s"] == 10.0
    now[0] = 130.0
    p = meter.annotate({"step": 50, "total_steps": 100})       # 10 steps in 20 s
    assert p["rate"] == pytest.approx(0.5) and p["eta_s"] == pytest.approx(100.0)


def test_status_eta_from_the_workers_eta_less_the_time_since():
    assert status_eta({"eta_s": 100.0}, last_beat=1000.0, now=1030.0) == pytest.approx(70.0)
    assert status_eta({"eta_s": 10.0}, last_beat=1000.0, now=1030.0) == 0.0
    # no eta_s: mean speed since the claim: 25 steps in 50 s, 75 left -> 150 s, 10 s ago
    assert status_eta({"step": 25, "total_steps": 100}, last_beat=1050.0, now=1060.0,
                      claimed_at=1000.0) == pytest.approx(140.0)
    assert status_eta({"step": 0, "total_steps": 100}, 1050.0, 1060.0, 1000.0) is None


def test_study_eta_pools_seconds_per_unit_of_work():
    # 300 s for 3,000 tokens -> 0.1 s/token; pending 1,000 + 2,000 tokens -> 300 s, plus a
    # running job's 60 s, on 2 workers -> 180 s
    finished = [(100.0, 1000.0), (200.0, 2000.0)]
    assert study_eta(finished, [1000.0, 2000.0], [60.0], workers=2) == pytest.approx(180.0)
    # without sizes: the mean finished job (150 s) per pending and per ETA-less running job
    assert study_eta(finished, [None, None], [None]) == pytest.approx(450.0)
    assert study_eta([], [1000.0]) is None
    assert study_eta(finished, []) == 0.0


def test_study_line_and_durations():
    assert study_line(2, 80, running=1, eta_s=3 * 3600 + 300) == \
        "job 3 of 80 (2 done, 1 running), study ETA 3 h 05 min"
    assert fmt_duration(None) == "?" and fmt_duration(45) == "45 s"
    assert fmt_duration(720) == "12 min" and fmt_duration(2 * 86400 + 4 * 3600) == "2 d 4 h"
    assert fmt_duration(float("inf")) == "?" and fmt_duration(float("nan")) == "?"


def test_bar_is_quiet_off_a_terminal_and_moves_on_one():
    quiet = JobProgress("j1", enabled=None)   # pytest captures stdout: not a terminal
    quiet.update({"step": 1, "total_steps": 10})
    assert quiet.bar is None
    out = io.StringIO()
    bar = JobProgress("j1", enabled=True, file=out)
    for step in (1, 5, 10):
        bar.update({"phase": "train", "step": step, "total_steps": 10})
    assert bar.bar.n == 10 and bar.bar.total == 10
    bar.close()
    assert "j1" in out.getvalue()


def test_status_rows_for_ten_thousand_jobs_are_fast():
    now = time.time()
    running = [{"job_id": f"j{i}", "worker": "w", "last_beat": now - 5, "claimed_at": now - 600,
                "progress": {"step": 50, "total_steps": 100, "eta_s": 300.0}}
               for i in range(10_000)]
    t0 = time.perf_counter()
    rows = status_rows(running, now)
    eta = study_eta([(600.0, 100.0)] * 5000, [100.0] * 5000, [r["eta_s"] for r in rows], 2)
    assert time.perf_counter() - t0 < 0.5
    assert rows[0]["eta_s"] == pytest.approx(295.0) and rows[0]["heartbeat_age_s"] == 5.0
    assert eta == pytest.approx((5000 * 600 + 10_000 * 295) / 2)
