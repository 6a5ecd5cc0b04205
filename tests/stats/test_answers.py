"""SUMMARY.txt opens with the Answers block (issue 27): criteria marked from the sections'
statistics, what the study could detect, a first screen at full scale, no line too long."""

import json
import random
import re

import pytest

from stats.core.power import mde_dz, seeds_needed
from stats.core.study import Options
from stats.render.summary import fold, mde_text
from stats.report import build_paper
from tests.stats.synthetic import Design, write_study

SMALL = {"bc2gm": 300, "chemprot": 200, "biosses": 40}


def answers_of(summary: str) -> list[str]:
    """The Answers block's lines (between its underline and the blank line after it)."""
    lines = summary.splitlines()
    start = lines.index("Answers") + 2
    return lines[start:lines.index("", start)]


def criteria(lines: list[str]) -> dict[str, str]:
    """"[MET] name: detail" lines -> {name: status}."""
    out = {}
    for line in lines:
        m = re.match(r"\s+\[(MET|NOT MET|NOT TESTABLE)\] ([^:]+):", line)
        if m:
            out[m[2]] = m[1]
    return out


def test_summary_opens_with_the_answers_and_marks_the_criteria(full_paper):
    summary = (full_paper["out"] / "SUMMARY.txt").read_text()
    lines = summary.splitlines()
    assert lines[3] == "Answers"  # right after the title
    block = answers_of(summary)
    assert block[0].startswith("RQ5 (primary)")
    rq1 = next(i for i, line in enumerate(block) if line.startswith("RQ1"))
    assert rq1 > 0
    marks = criteria(block)
    # truth: +3 points MT on bc2gm, TC = ST, 5 seeds: genuine transfer with a large d
    assert marks["genuine transfer at Holm p < 0.05 with Cohen's d > 0.3"] == "MET"
    # three tasks compared: the 5-of-8 criterion cannot be judged
    assert marks["improvement on >= 5 of 8 datasets (Holm p < 0.05)"] == "NOT TESTABLE"
    assert marks["average gain +2 to +5 points"] in ("MET", "NOT MET")
    assert any(line.startswith("Power: with 5 seeds") for line in block)
    assert "No results for RQ2" in "\n".join(block)
    stats = json.loads((full_paper["out"] / "statistics.json").read_text())
    ans = stats["answers"]
    assert ans["rq5"]["strongest"]["task"] == "bc2gm"
    assert ans["rq5"]["criteria"][0]["status"] == "met"
    assert ans["power"]["seeds"] == 5 and ans["lines"] == block
    # the counts are the rows' own verdicts, not recomputed ones
    verdicts = {}
    for f in stats["rq5"]:
        for r in f["rows"]:
            if "parity_summary" in r:
                verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
    assert ans["rq5"]["verdicts"] == verdicts


def test_no_gain_and_two_seeds_say_so_in_words(tmp_path):
    """No multi-task gain and two seeds: the RQ5 criterion is not met, and the power
    sentence says two seeds check the pipeline, not the hypothesis; no minimum detectable
    effect larger than the metric's range is printed anywhere."""
    write_study(tmp_path / "r", Design(seeds=(1, 2), n_units=SMALL, seed_sd=0.02,
                                       train_sd=0.3))
    build_paper(tmp_path / "p", [tmp_path / "r"], Options(resamples=50))
    summary = (tmp_path / "p" / "SUMMARY.txt").read_text()
    block = answers_of(summary)
    text = " ".join(line.strip() for line in block)
    assert criteria(block)["genuine transfer at Holm p < 0.05 with Cohen's d > 0.3"] != "MET"
    assert "with 2 seeds" in text and "the pipeline, not the hypothesis" in text
    stats = json.loads((tmp_path / "p" / "statistics.json").read_text())
    power = stats["answers"]["power"]
    assert power["seeds"] == 2 and power["mde_points"] > 5
    assert re.search(rf">= {power['seeds_for_2_points']} seeds needed for 2 points", text)
    for number in re.findall(r"(?:MDE \(80% power\)|d_z [\d.]+ =) ([\d.]+) points", summary):
        assert float(number) <= 200, number
    assert "not detectable with 2 seeds; >= " in summary


def test_full_scale_first_screen(full_scale_paper):
    summary = (full_scale_paper / "SUMMARY.txt").read_text()
    block = answers_of(summary)
    assert len(block) <= 40, "\n".join(block)
    assert max(len(line) for line in block) <= 100
    assert max(len(line) for line in summary.splitlines()) <= 160
    text = "\n".join(block)
    # counts per parity mode and per model, the all-8 set abbreviated with its key
    for mode in ("total", "per_task"):
        assert f"parity {mode}: " in text
    for model in ("bert-base-uncased", "biobert", "scibert", "pubmedbert"):
        assert re.search(rf"^    {model}: ", text, re.MULTILINE)
        assert f"{model}, mt[all 8]: " in text
    assert "mt[all 8] = mt[bc2gm+jnlpba+chemprot+ddi+gad+hoc+pubmedqa+biosses]" in text
    assert criteria(block)["improvement on >= 5 of 8 datasets (Holm p < 0.05)"] != "NOT TESTABLE"


def test_fold_keeps_every_word_and_the_width():
    rng = random.Random(3)
    words = ["alpha", "beta;", "g", "x" * 70, "Δ", "[+1.20, +3.40]"]
    for _ in range(500):
        line = " " * rng.choice([0, 2, 4]) + " ".join(
            rng.choice(words) + ("; " if rng.random() < 0.3 else "")
            for _ in range(rng.randint(1, 150)))
        out = fold(line, 160)
        assert all(len(part) <= 160 for part in out)
        assert " ".join(out).split() == line.split()
        assert len(out) == 1 or all(part.startswith(" " * 4) for part in out[1:])


def test_seeds_needed_is_the_first_n_whose_mde_reaches_the_effect():
    for sd in (0.005, 0.01, 0.03, 0.2):
        n = seeds_needed(0.02, sd)
        assert mde_dz(n) * sd <= 0.02 < mde_dz(n - 1) * sd if n > 2 else mde_dz(n) * sd <= 0.02
    assert seeds_needed(0.02, 0.0) is None


@pytest.mark.parametrize("sd, expect", [(0.5, "not detectable with 2 seeds; >= "),
                                        (0.01, "d_z 11.55 = 11.55 points")])
def test_an_mde_beyond_the_metric_range_is_not_a_number(sd, expect):
    row = {"primary_metric": "f1", "paired_t": {"sd_diff": sd},
           "mde": {"n": 2, "alpha": 0.05, "d_z": mde_dz(2), "raw": mde_dz(2) * sd,
                   "reason": None}}
    assert mde_text(row).startswith(expect)
