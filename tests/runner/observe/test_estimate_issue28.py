"""Issue 28: the estimate counts token-controlled jobs at their epoch cap, leaves out the
jobs a manifest skips, prints quota hours per session's devices and the cost drivers, and
counts validation on max_validation_examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.cli import main
from runner.observe import estimate as est
from runner.study import design
from runner.study.manifest import load_manifest
from runner.study.plan import build_plan

ROOT = Path(__file__).resolve().parents[3]


def _without_subset(text: str) -> str:
    """The manifest as the methodology has it: validation on the whole split."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not line.startswith("max_validation_examples"))


def _plan(tmp_path, name="phase3_token_controlled", edit=None):
    text = _without_subset((ROOT / "manifests" / f"{name}.toml").read_text())
    if edit:
        text = edit(text)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return build_plan(load_manifest(path), ROOT / "data")


def _lengths():
    from runner.data import token_lengths
    return design.Lengths(token_lengths.read(ROOT / "data"))


def test_token_controlled_jobs_are_counted_at_their_cap_and_unreachable_ones_skipped(tmp_path):
    run = _plan(tmp_path, edit=lambda t: t.replace('parity = "total"\n',
                                                   'parity = "total"\nunreachable_parity = "run"\n'))
    skip = _plan(tmp_path)
    lengths = _lengths()
    tcs = {t.job_id: t for t in design.token_controlled(run, lengths, design.Results(None))}
    sizes = {s.job_id: s for s in est.job_sizes(run, lengths)}
    for job_id, tc in tcs.items():
        assert sizes[job_id].train_tokens == pytest.approx(
            min(tc.target_tokens, tc.epoch_cap * tc.tokens_per_epoch))
        assert sizes[job_id].skipped is None           # "run": every job counted
    unreachable = {j for j, tc in tcs.items() if not tc.feasible}
    assert len(unreachable) == 108                     # the count for phase 3
    skipped = {s.job_id for s in est.job_sizes(skip, lengths) if s.skipped}
    assert skipped == unreachable
    e_run, e_skip = est.estimate(sizes.values(), "t4"), est.estimate(
        est.job_sizes(skip, lengths), "t4")
    assert len(e_skip.jobs) == len(e_run.jobs) - 108 and len(e_skip.skipped) == 108
    assert e_skip.hours + e_skip.skipped_hours == pytest.approx(e_run.hours)


def test_quota_hours_are_device_hours_over_the_session_s_devices():
    job = est.JobSize("j", "bert-base-uncased", 1e9, 0.0, 50.0, "x")
    two = est.estimate([job], "t4")                    # Kaggle's 2xT4 session
    one = est.estimate([job], "t4", devices_per_session=1)
    assert two.devices_per_session == 2 and one.devices_per_session == 1
    assert two.hours == pytest.approx(one.hours)
    assert two.quota_used == pytest.approx(one.hours / 2)
    assert est.estimate([job], "p100").devices_per_session == 1
    with pytest.raises(ValueError):
        est.estimate([job], "t4", devices_per_session=0)


def test_drivers_add_up_and_name_the_validation_share(tmp_path):
    e = est.estimate(est.job_sizes(_plan(tmp_path), _lengths()), "t4")
    drivers = e.drivers()
    assert sum(d["hours"] for d in drivers) == pytest.approx(e.hours)
    assert sum(d["jobs"] for d in drivers) == len(e.jobs)
    assert [d["hours"] for d in drivers] == sorted((d["hours"] for d in drivers), reverse=True)
    top = drivers[0]
    assert top["group"].startswith("multi_task bc2gm+jnlpba+chemprot")
    assert 0.5 < top["validation_share"] < 1        # validation dominates the all-8 job
    assert all(0 <= d["validation_share"] < 1 for d in drivers)


def test_validation_subset_cuts_only_validation_tokens(tmp_path):
    lengths = _lengths()
    base = _plan(tmp_path, "phase1_single_task")
    sub = _plan(tmp_path, "phase1_single_task", edit=lambda t: t.replace(
        "min_delta = 1e-4\n", "min_delta = 1e-4\nmax_validation_examples = {chemprot = 1000}\n"))
    a = {(s.label): s for s in est.job_sizes(base, lengths)}
    b = {(s.label): s for s in est.job_sizes(sub, lengths)}
    n_val = lengths.stats("chemprot", "validation", 512)[0]
    for label, s in a.items():
        if "chemprot" in label:
            assert b[label].validation_tokens == pytest.approx(s.validation_tokens * 1000 / n_val)
            assert b[label].eval_tokens - b[label].validation_tokens == pytest.approx(
                s.eval_tokens - s.validation_tokens)          # the test set is whole
        else:
            assert b[label].eval_tokens == pytest.approx(s.eval_tokens)
            assert b[label].job_id == s.job_id                # other jobs keep their ids
        assert b[label].train_tokens == pytest.approx(s.train_tokens)


def test_cli_prints_quota_hours_drivers_and_upper_bound(capsys):
    rc = main(["plan", str(ROOT / "manifests/phase3_token_controlled.toml"), "--data-dir",
               str(ROOT / "data"), "--estimate", "--gpu", "t4", "--devices-per-session", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "UPPER BOUND" in out and "cost drivers" in out
    assert "(--devices-per-session 2)" in out and "quota hours" in out
    assert "not counted: 108 token-controlled jobs" in out
    assert main(["plan", str(ROOT / "manifests/phase3_token_controlled.toml"), "--estimate",
                 "--devices-per-session", "0"]) == 2
