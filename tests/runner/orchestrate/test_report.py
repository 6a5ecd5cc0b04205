"""The `status` screen writes every duration one way (runner.observe.progress.fmt_duration):
a running job's ETA, its heartbeat's age and the rest of the study's ETA."""

from __future__ import annotations

import re
from pathlib import Path

from mtl_contract.files import atomic_write_json
from runner.observe.progress import fmt_duration
from runner.orchestrate.ledger import Ledger, Worker
from runner.orchestrate.report import status
from runner.study.manifest import load_manifest
from runner.study.plan import build_plan

ROOT = Path(__file__).resolve().parents[3]
SMALL = ROOT / "tests/assets/manifests/small.toml"
DURATION = r"(\?|\d+ s|\d+ min|\d+ h \d\d min|\d+ d \d+ h)"


def test_every_duration_on_the_status_screen_is_fmt_duration(tmp_path):
    plan = build_plan(load_manifest(SMALL), ROOT / "data")
    ledger = Ledger(tmp_path)
    ledger.ensure()
    first, running = plan.jobs[0], plan.jobs[1]
    atomic_write_json(ledger.result_path(first.job_id), {"experiment_id": first.job_id})
    ledger.record_duration(first.job_id, first.experiment, 4000.0)   # 1 h 06 min
    claim = ledger.try_claim(running.job_id, Worker("gpu0"), None)
    # the worker's own ETA: 2 h 05 min (7500 s), counting down since the heartbeat
    ledger.heartbeat(claim, {"step": 10, "total_steps": 100, "eta_s": 7500.0,
                             "elapsed_s": 60.0})
    text = status(plan, tmp_path)
    line = next(ln for ln in text.splitlines() if running.job_id in ln)
    eta = re.search(rf"ETA {DURATION},", line)
    beat = re.search(rf"heartbeat {DURATION} ago", line)
    assert eta and eta.group(1) in ("2 h 05 min", "2 h 04 min"), line
    assert beat and beat.group(1).endswith(" s"), line
    rest = re.search(rf"rest of the study: ETA {DURATION} ", text)
    assert rest and rest.group(1) != "?", text
    # no other way of writing a duration is left on the screen (e.g. 2h05m, 4m59s)
    assert not re.search(r"\d+h\d\dm|\d+m\d\ds", text), text
    assert fmt_duration(7500.0) == "2 h 05 min"
