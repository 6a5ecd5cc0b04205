"""The design check (runner/study/design.py): power per comparison, token-controlled feasibility,
truncation and total tokens, from the plan and token-length histograms alone."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.data import token_lengths
from runner.study import design
from runner.study.manifest import parse_manifest
from runner.study.plan import build_plan
from stats.core.power import mde_dz, paired_power

ROOT = Path(__file__).resolve().parents[3]

STUDY = """\
[study]
name = "d"
seeds = {seeds}

[defaults]
batch_size = 10
max_epochs = 2
max_length = {max_length}

[[experiments]]
name = "st"
strategy = "single_task"
models = ["minilm"]
tasks = ["bc2gm", "gad"]

[[experiments]]
name = "mt"
strategy = "multi_task"
models = ["minilm"]
task_sets = [["bc2gm", "gad"]]

[[experiments]]
name = "tc"
strategy = "token_controlled"
reference = "mt"
parity = "{parity}"
"""


def data_dir(tmp_path: Path) -> Path:
    """SHA256SUMS of the real data (plan ids read it) and known token lengths: bc2gm 100
    training examples of 10 tokens (1,000 a epoch), gad 10 of 10 (100 a epoch) and 2 of 30."""
    out = tmp_path / "data"
    out.mkdir(parents=True)
    shutil.copy(ROOT / "data" / "SHA256SUMS", out / "SHA256SUMS")
    hist = {"bc2gm": {"train": {"10": 100}, "validation": {"10": 5}, "test": {"10": 7, "40": 3}},
            "gad": {"train": {"10": 10}, "validation": {"10": 5}, "test": {"10": 5}}}
    doc = {"schema": token_lengths.SCHEMA, "tokenizer": "test", "tasks": hist}
    (out / token_lengths.FILENAME).write_text(json.dumps(doc), encoding="utf-8")
    return out


def plan_of(tmp_path, seeds="[1, 2, 3]", parity="total", max_length=512):
    text = STUDY.format(seeds=seeds, parity=parity, max_length=max_length)
    return build_plan(parse_manifest(text, "d.toml"), data_dir(tmp_path))


def test_power_matches_statsmodels_including_where_scipy_returns_nan():
    from statsmodels.stats.power import TTestPower

    for n in (2, 3, 5, 10, 30):
        want = TTestPower().solve_power(effect_size=None, nobs=n, alpha=0.05, power=0.8,
                                        alternative="two-sided")
        assert mde_dz(n) == pytest.approx(want, rel=1e-5)
    # n = 2: scipy's noncentral t is nan at this noncentrality; the quadrature takes over
    assert paired_power(11.55, 2) == pytest.approx(0.80, abs=1e-3)


def test_comparisons_have_the_matched_seeds_and_their_power(tmp_path):
    check = design.check(plan_of(tmp_path))
    by = {(c.question, c.task): c for c in check.comparisons}
    assert set(by) == {("RQ1", "bc2gm"), ("RQ1", "gad"), ("RQ5", "bc2gm"), ("RQ5", "gad")}
    for c in by.values():
        assert c.seeds == [1, 2, 3] and c.paired_test
        assert c.sd_points == design.DEFAULT_SD_POINTS and c.sd_source == "default"
        assert c.mde_dz == pytest.approx(mde_dz(3), abs=1e-4)
        assert c.mde_points == pytest.approx(mde_dz(3) * design.DEFAULT_SD_POINTS, abs=1e-4)
    assert by[("RQ5", "gad")].systems == ["mt[bc2gm+gad]", "tc"]
    assert not any("CANNOT TEST" in w for w in check.warnings)


def test_one_seed_cannot_test_anything_and_says_so_first(tmp_path):
    check = design.check(plan_of(tmp_path, seeds="[7]"))
    assert all(not c.paired_test and c.mde_points is None for c in check.comparisons)
    assert check.warnings[0].startswith("THIS STUDY CANNOT TEST ANYTHING")
    assert "no paired test" in "\n".join(design.render(check))


def test_token_controlled_projection_flags_the_infeasible_job(tmp_path):
    # mt: 2 epochs x (10 + 1) batches of 10; p = 100/110, 10/110 -> 2,000 + 200 tokens
    check = design.check(plan_of(tmp_path, seeds="[1]"))
    tc = {t.task: t for t in check.token_controlled}
    assert tc["bc2gm"].target_tokens == 2200 and tc["bc2gm"].target_source == "projected"
    assert tc["bc2gm"].epochs_needed == pytest.approx(2.2) and tc["bc2gm"].feasible
    assert tc["gad"].epochs_needed == pytest.approx(22.0) and not tc["gad"].feasible
    assert tc["gad"].epoch_cap == design.DEFAULT_TC_EPOCH_CAP
    assert any("1 token-controlled job(s) cannot reach parity" in w for w in check.warnings)
    text = "\n".join(design.render(check))
    assert "INFEASIBLE (1 of 1 jobs)" in text and 'parity = "per_task"' in text
    # per_task is named for what it answers, not offered as the substitute control (issue 24)
    warning = next(w for w in check.warnings if "cannot reach parity" in w)
    assert "is no substitute" in warning and "another question" in warning
    assert "instead" not in warning


def test_epochs_needed_counts_a_batch_as_at_most_the_task_s_examples(tmp_path):
    """Issue 25: batch 65,536 over 100 / 10 examples is one batch of 100 / 10 a epoch, not
    65,536 examples (it projected 2.4 million tokens: 2,383 epochs)."""
    text = STUDY.format(seeds="[1]", parity="total", max_length=512).replace(
        "batch_size = 10", "batch_size = 65536")
    check = design.check(build_plan(parse_manifest(text, "d.toml"), data_dir(tmp_path)))
    tc = {t.task: t for t in check.token_controlled}
    # 2 epochs x (1 + 1) batches, drawn from bc2gm / gad with p = 100/110, 10/110, each
    # a whole epoch of its task (1,000 / 100 tokens): 4 x (909.1 + 9.1) = 3,672 tokens (gad: 36.7
    # epochs of its 100)
    assert tc["bc2gm"].target_tokens == 3672
    assert tc["bc2gm"].epochs_needed == pytest.approx(3.67)
    assert tc["gad"].epochs_needed == pytest.approx(36.73)


def test_per_task_parity_is_feasible_where_total_is_not(tmp_path):
    check = design.check(plan_of(tmp_path, seeds="[1]", parity="per_task"))
    tc = {t.task: t for t in check.token_controlled}
    assert tc["gad"].target_tokens == 200 and tc["gad"].epochs_needed == pytest.approx(2.0)
    assert all(t.feasible for t in check.token_controlled)


def test_a_finished_reference_gives_the_measured_target_and_sd(tmp_path):
    plan = plan_of(tmp_path)
    results = tmp_path / "results"
    mt = [j for j in plan.jobs if j.strategy == "multi_task"]
    st = {j.seed: j for j in plan.jobs if j.strategy == "single_task" and j.tasks == ("gad",)}
    for j, mt_f1, st_f1 in zip(mt, (0.70, 0.74, 0.71), (0.69, 0.70, 0.70)):
        write_result(results, j.job_id, {"token_count": 5000,
                                         "tokens_per_task": {"bc2gm": 4500, "gad": 500},
                                         "per_task": {"gad": score(mt_f1)}})
        write_result(results, st[j.seed].job_id, {"per_task": {"gad": score(st_f1)}})
    check = design.check(plan, results)
    tc = {t.task: t for t in check.token_controlled if t.seed == 1}
    assert tc["gad"].target_tokens == 5000 and tc["gad"].target_source == "measured"
    assert tc["gad"].epochs_needed == pytest.approx(50.0) and not tc["gad"].feasible
    rq1 = {c.task: c for c in check.comparisons if c.question == "RQ1"}
    # differences 1, 4, 1 points: sd sqrt(3)
    assert rq1["gad"].sd_source == "measured (3 seeds)"
    assert rq1["gad"].sd_points == pytest.approx(3 ** 0.5, abs=1e-4)
    assert rq1["bc2gm"].sd_source == "default"
    # issue 23: the RQ1 family's sd is the one its finished jobs measured (gad's)
    fam = next(f for f in check.families if f.question == "RQ1")
    assert fam.sd_points == pytest.approx(3 ** 0.5, abs=1e-3)
    assert fam.sd_source.startswith("measured: 1 of 2 comparison(s)")


def test_truncation_counts_at_the_effective_length(tmp_path):
    check = design.check(plan_of(tmp_path, max_length=32))
    trunc = {t.task: t for t in check.truncation}
    assert (trunc["bc2gm"].max_length, trunc["bc2gm"].test_truncated,
            trunc["bc2gm"].test_examples, trunc["bc2gm"].train_truncated) == (32, 3, 10, 0)
    check = design.check(plan_of(tmp_path / "b", max_length=512))
    assert {t.task: t.test_truncated for t in check.truncation}["bc2gm"] == 0


def test_total_tokens_add_every_job_at_its_planned_budget(tmp_path):
    check = design.check(plan_of(tmp_path, seeds="[1]"))
    # st bc2gm 2 x 1000 (+ nothing: 100 examples fill 10 batches), st gad 2 x 100, mt 2200,
    # tc 2200 + 2200
    assert check.total_training_tokens == 2000 + 200 + 2200 + 2 * 2200


def test_without_the_lengths_file_the_check_still_runs_and_says_what_is_missing(tmp_path):
    plan = plan_of(tmp_path)
    (plan.data_dir / token_lengths.FILENAME).unlink()
    check = design.check(plan)
    assert check.comparisons and not check.token_controlled
    assert any(token_lengths.FILENAME in w for w in check.warnings)


def test_the_check_imports_no_torch(tmp_path):
    code = ("import sys; from runner.study.manifest import load_manifest; "
            "from runner.study.plan import build_plan; from runner.study import design; "
            "c = design.check(build_plan(load_manifest('manifests/full_study.toml'), 'data')); "
            "assert c.token_controlled and c.comparisons; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def score(f1: float) -> dict:
    return {"primary_metric": "f1", "metrics": {"f1": f1}}


def write_result(results: Path, job_id: str, doc: dict) -> None:
    (results / job_id).mkdir(parents=True, exist_ok=True)
    (results / job_id / "result.json").write_text(json.dumps(doc), encoding="utf-8")


def test_runner_plan_prints_the_check_and_json_gives_it_to_scripts(tmp_path):
    """The issue's 'done when': phase 3's infeasible token-controlled jobs and the power of
    each comparison, from `python -m runner plan` (text and --json)."""
    def plan(*extra):
        return subprocess.run(
            [sys.executable, "-m", "runner", "plan", "manifests/phase3_token_controlled.toml",
             "--results-dir", str(tmp_path / "r"), *extra], cwd=ROOT, capture_output=True,
            text=True, check=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"}).stdout
    text = plan()
    assert "design check" in text and "INFEASIBLE" in text
    assert "RQ5 multi_task[bc2gm+jnlpba+chemprot+ddi+gad+hoc+pubmedqa+biosses] vs " \
           "token_controlled: 3 matched seed(s) [42, 43, 44]; MDE" in text
    # issue 23: per family the MDE unadjusted and at Holm's first step, from a named sd, the
    # seeds the expected effects need, and the MT-vs-ST updates-per-example line
    assert "RQ1 multi_task vs single_task (pubmedbert, 8 task(s), 3 seeds): MDE " in text
    assert "at Holm's first step (alpha 0.05/8)" in text and "seed_spread_bc2gm_uniform_mask.json" in text
    assert "+2 points: " in text and "+5 points: " in text and "CANNOT DETECT" in text
    assert "MT-vs-ST" in text and "grad_accumulation = 2 in multi_task" in text
    doc = json.loads(plan("--json", "--sd-points", "2"))
    infeasible = [t for t in doc["design"]["token_controlled"] if not t["feasible"]]
    assert infeasible and {t["task"] for t in infeasible} >= {"biosses", "pubmedqa", "gad"}
    rq5 = [c for c in doc["design"]["comparisons"] if c["question"] == "RQ5"]
    assert all(c["sd_points"] == 2 and c["sd_source"] == "given" for c in rq5)
    assert all(c["mde_points"] == pytest.approx(2 * mde_dz(3), abs=1e-3) for c in rq5)
    assert len(doc["jobs"]) == 3 * 27 * 3 and not (tmp_path / "r").exists()


# ---------------------------------------------------------------- issue 23: power, confounds
def test_the_default_sd_is_derived_from_the_committed_seed_spread_files():
    """DEFAULT_SD_POINTS is sqrt(2) x the engine's pooled seed sd in the files it names, and
    those files measured the engine as it trains now (batch order and dropout)."""
    from runner.ml.batching import BATCH_ORDER
    from runner.ml.model import DROPOUT

    docs = [json.loads((ROOT / f).read_text()) for f in design.SEED_SPREAD_FILES]
    assert all(d["settings"]["engine_order"] == BATCH_ORDER
               and d["settings"]["engine_dropout"] == DROPOUT for d in docs)
    assert design.default_sd_from_spread(docs) == pytest.approx(design.DEFAULT_SD_POINTS,
                                                                abs=0.005)
    assert all(f.rsplit("/", 1)[1] in design.DEFAULT_SD_SOURCE for f in design.SEED_SPREAD_FILES)
    # by hand: two systems of sd 1 and 3 with 3 seeds each pool to sqrt(5); a difference
    # of two such systems has sqrt(2) x that
    doc = {"runs": {"a": {"engine": {"1": {"score": 0.10}, "2": {"score": 0.11},
                                     "3": {"score": 0.12}}},
                    "b": {"engine": {"1": {"score": 0.10}, "2": {"score": 0.13},
                                     "3": {"score": 0.16}}}}}
    assert design.default_sd_from_spread([doc]) == pytest.approx((2 * 5) ** 0.5)


def test_each_family_has_its_mde_unadjusted_and_at_holms_first_step(tmp_path):
    check = design.check(plan_of(tmp_path))
    fams = {(f.question, tuple(f.systems)): f for f in check.families}
    assert set(fams) == {("RQ1", ("mt", "st")), ("RQ5", ("mt", "tc"))}
    sd = design.DEFAULT_SD_POINTS
    for f in fams.values():
        assert f.tasks == ["bc2gm", "gad"] and f.seeds == 3
        assert f.sd_source == design.DEFAULT_SD_SOURCE
        assert f.mde_points == pytest.approx(mde_dz(3) * sd, abs=0.01)
        assert f.mde_holm_points == pytest.approx(mde_dz(3, 0.05 / 2) * sd, abs=0.01)
        assert f.mde_holm_points > f.mde_points
        for effect in ("2", "5"):
            n = f.seeds_needed[effect]
            # the fewest seeds: enough at n, not at n - 1
            assert mde_dz(n, 0.025) * sd <= float(effect) < mde_dz(n - 1, 0.025) * sd
        assert f.detects == {"2": False, "5": False}
    assert any("CANNOT DETECT the methodology's expected +2 or +5 points" in w
               and "RQ1 mt vs st" in w for w in check.warnings)
    text = "\n".join(design.render(check))
    assert "at Holm's first step (alpha 0.05/2)" in text and "seeds needed" in text


def test_enough_seeds_detect_the_expected_effect_and_say_so(tmp_path):
    seeds = "[" + ", ".join(str(s) for s in range(1, 21)) + "]"
    check = design.check(plan_of(tmp_path, seeds=seeds), sd_points=1.0)
    for f in check.families:
        assert f.detects == {"2": True, "5": True} and f.sd_source == "given"
        assert f.mde_holm_points <= 2
    assert not any("CANNOT DETECT" in w for w in check.warnings)


STUDY_BATCHES = STUDY.replace('batch_size = 10\n', '') + '''
[[experiments]]
name = "mt_accumulated"
strategy = "multi_task"
models = ["minilm"]
task_sets = [["bc2gm", "gad"]]
grad_accumulation = 2
'''


def test_mt_vs_st_updates_per_example_is_a_confound_line_with_its_remedy(tmp_path):
    text = STUDY_BATCHES.format(seeds="[1, 2, 3]", parity="total", max_length=512)
    check = design.check(build_plan(parse_manifest(text, "d.toml"), data_dir(tmp_path)))
    lines = {(x.question, tuple(x.systems)): x for x in check.confounds}
    plain = lines[("RQ1", ("mt", "st"))]
    assert plain.examples_per_step == [8, 16] and plain.updates_ratio == 2
    assert plain.alternative.startswith("grad_accumulation = 2 in mt")
    assert lines[("RQ5", ("mt", "tc"))].updates_ratio == 2
    fixed = lines[("RQ1", ("mt_accumulated", "st"))]
    assert fixed.examples_per_step == [16, 16] and fixed.alternative is None
    rendered = "\n".join(design.render(check))
    assert "MT-vs-ST" in rendered and "a CONFOUND of the comparison" in rendered
    assert "equal updates per example" in rendered


def test_an_explicit_warm_up_of_10_percent_or_more_is_warned(tmp_path):
    data = data_dir(tmp_path)

    def warnings(extra):
        text = STUDY.format(seeds="[1]", parity="total", max_length=512).replace(
            "max_epochs = 2\n", f"max_epochs = 2\n{extra}\n")
        return design.check(build_plan(parse_manifest(text, "d.toml"), data))
    # st gad: 10 rows / batch 10 x 2 epochs = 2 planned steps; bc2gm 20
    check = warnings("warmup_steps = 2")
    assert {(tuple(w.tasks), w.planned_steps) for w in check.warmups} >= {
        (("gad",), 2), (("bc2gm",), 20)}
    assert any("warm up for 10% or more" in w for w in check.warnings)
    assert not warnings("").warmups                       # the default caps itself
    assert not warnings("warmup_ratio = 0.1").warmups     # a ratio states its share


POWER_RE = re.compile(r"MDE of ([\d.]+) points unadjusted, ([\d.]+)\s*# at Holm's first step "
                      r"over (\d+) tasks; \+2 points needs (\d+) seeds, \+5 needs (\d+)")


@pytest.mark.parametrize("name, planned", [
    ("phase1_single_task", "phase3_token_controlled"),
    ("phase2_multi_task", "phase3_token_controlled"),
    ("phase3_token_controlled", "phase3_token_controlled"),
    ("full_study", "full_study")])
def test_the_shipped_manifests_state_the_power_their_plan_gives(name, planned):
    """Issue 23: each phase / full manifest says its power in a comment; the numbers are the
    design check's (phases 1 and 2: of the phase-3 comparisons their jobs enter)."""
    from runner.study.manifest import load_manifest

    text = (ROOT / "manifests" / f"{name}.toml").read_text(encoding="utf-8")
    m = POWER_RE.search(text)
    assert m, f"{name}: no power comment"
    mde, holm, tasks, two, five = float(m[1]), float(m[2]), int(m[3]), int(m[4]), int(m[5])
    plan = build_plan(load_manifest(ROOT / "manifests" / f"{planned}.toml"), ROOT / "data")
    families = design.check(plan).families
    assert families
    for f in families:
        assert (f.mde_points, f.mde_holm_points, len(f.tasks)) == (mde, holm, tasks)
        assert (f.seeds_needed["2"], f.seeds_needed["5"]) == (two, five)
        assert f.sd_source == design.DEFAULT_SD_SOURCE
