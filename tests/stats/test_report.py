"""python -m stats end to end: files, contents, degenerate input, exit codes, no torch."""

import json
import re

import pytest

from stats.core.study import Options
from stats.report import SECTIONS, build_paper
from tests.stats.conftest import flat

TABLES = ("table_single_task.tex", "table_multitask_comparison.tex",
          "table_rq5_token_controlled.tex", "table_dataset_statistics.tex",
          "table_contamination.tex", "table_clean_units.tex", "table_blurb.tex")
FIGURES = ("fig_strategy_bars", "fig_validation_curves", "fig_transfer_heatmap",
           "fig_contamination", "fig_rq5_transfer")
NAN = re.compile(r"(?<![A-Za-z])nan(?![A-Za-z])", re.IGNORECASE)


def strict_json(path):
    def bad(c):
        raise AssertionError(f"{path}: {c} in JSON")
    return json.loads(path.read_text(), parse_constant=bad)


def check_outputs(out):
    for name in TABLES + ("all_results.csv", "statistics.json", "SUMMARY.txt"):
        assert (out / name).stat().st_size > 0, name
    for stem in FIGURES:
        for ext in ("pdf", "png"):
            assert (out / f"{stem}.{ext}").stat().st_size > 1000, f"{stem}.{ext}"
    for name in TABLES + ("SUMMARY.txt",):
        text = (out / name).read_text()
        assert not NAN.search(text), f"NaN in {name}"
    assert not list(out.glob(".*.tmp")) and not list(out.glob(".*.pdf"))  # no temp files left
    return strict_json(out / "statistics.json")


def test_cli_builds_every_output_without_torch(full_paper):
    proc, out = full_paper["proc"], full_paper["out"]
    assert proc.returncode == 0, proc.stderr
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    assert probe == {"torch": False, "runner": False}
    stats = check_outputs(out)
    assert stats["options"]["resamples"] == 200 and stats["inputs"]["jobs"] == 35
    skipped = {s["path"]: s["reason"] for s in stats["inputs"]["skipped"]}
    assert str(full_paper["malformed"]) in skipped
    assert str(full_paper["truncated"]) in skipped
    assert str(full_paper["malformed"]) in proc.stderr


def test_tables_and_summary_report_the_known_truth(full_paper):
    out = full_paper["out"]
    t3 = (out / "table_rq5_token_controlled.tex").read_text()
    bc2gm = next(line for line in t3.splitlines() if line.startswith("bc2gm &"))
    assert "genuine transfer" in bc2gm and r"$^{***}$" in bc2gm
    chem = next(line for line in t3.splitlines() if line.startswith("chemprot &"))
    assert r"\textbf{20.0\%}" in chem and "not testable" in chem
    assert "token parity violated" in t3
    t2 = (out / "table_multitask_comparison.tex").read_text()
    assert re.search(r"^bc2gm & f1 & [\d.]+ & [\d.]+ & \+3\.\d", t2, re.MULTILINE)
    assert r"\multicolumn{9}{l}{\textit{mt\_all vs st}}" in t2  # the set, once per block
    summary = flat((out / "SUMMARY.txt").read_text())
    for rq in ("RQ1", "RQ5"):
        assert rq in summary
    assert "verdict GENUINE TRANSFER" in summary and "parity violated" in summary
    # both effect sizes, labelled; the methodology's pooled line; secondary metrics
    assert "effect Hedges' g (paired) +" in summary and "Cohen's d (pooled SD) +" in summary
    assert re.search(r"methodology 9\.2, all 3 compared task\(s\) pooled .* Student's "
                     r"t\(28\) = [-\d.]+, p [\d.]+; Cohen's d \(pooled SD\) [-+][\d.]+ "
                     r"\((small|medium|large)\); d > 0\.3: (yes|no)", summary)
    assert re.search(r"single_task \(st\) chemprot macro_f1: .*; accuracy [\d.]+$", summary,
                     re.MULTILINE)
    assert r"$d$ & $d_z$ & Seeds ($n$)" in t2 and "1--5 (5)" in t2
    assert str(full_paper["malformed"]) in summary
    # the truncated ST biosses predictions: its system CI is n/a with the reason
    assert "predictions unusable: cannot read parquet" in summary
    csv = (out / "all_results.csv").read_text().splitlines()
    assert len(csv) == 1 + 15 + 5 * 3 + 15  # header + ST + MT (3 tasks each) + TC
    stats = strict_json(out / "statistics.json")
    (row,) = [r for f in stats["rq5"] for r in f["rows"] if r["task"] == "bc2gm"]
    assert row["verdict"] == "genuine transfer" and row["n"] == 5
    assert {"paired_t", "wilcoxon", "d_z", "pooled_d", "mde", "paired_bootstrap",
            "values_a", "values_b", "parity"} <= set(row)


def test_degenerate_study_prints_reasons_never_nan(degenerate_paper):
    out = degenerate_paper
    stats = check_outputs(out)
    t1 = (out / "table_single_task.tex").read_text()
    assert "1 seed: no standard deviation" in t1 and "not run for this model" in t1
    t2 = (out / "table_multitask_comparison.tex").read_text()
    assert "identical scores" in t2 and "only multi\\_task ran" in t2
    assert "only single\\_task ran" in t2
    t3 = (out / "table_rq5_token_controlled.tex").read_text()
    assert "mixed tokenizers" in t3
    rq1 = [r for f in stats["rq1"] for r in f["rows"]]
    same = next(r for r in rq1 if r["task"] == "bc2gm")
    assert same["paired_t"]["p"] is None and same["paired_t"]["reason"]
    summary = (out / "SUMMARY.txt").read_text()
    assert "RQ1" in summary and "RQ5" in summary and "identical scores" in summary


def test_empty_results_folder_still_writes_everything(tmp_path):
    (tmp_path / "results").mkdir()
    build_paper(tmp_path / "paper", [tmp_path / "results"], Options(resamples=10))
    check_outputs(tmp_path / "paper")
    summary = (tmp_path / "paper" / "SUMMARY.txt").read_text()
    assert "RQ5" in summary and "no token-controlled job" in summary


def test_sections_are_an_extension_point(tmp_path):
    from stats.report import Section, SectionOutput, SummaryBlock

    extra = Section("rq4_demo", ("RQ4",), lambda ctx: SectionOutput(
        statistics={"rq4": {"jobs": len(ctx.study.jobs)}},
        summary=[SummaryBlock("RQ4: demo", ["jobs seen by the section"])]))
    (tmp_path / "r").mkdir()
    build_paper(tmp_path / "p", [tmp_path / "r"], Options(resamples=10),
                sections=[s for s in SECTIONS if s.name not in ("figures", "rq2", "rq3", "rq4")]
                + [extra])
    assert strict_json(tmp_path / "p" / "statistics.json")["rq4"] == {"jobs": 0}
    summary = (tmp_path / "p" / "SUMMARY.txt").read_text()
    assert "RQ4: demo" in summary and "RQ2, RQ3: no analysis section" in summary


def test_missing_results_folder_exits_2_and_names_it(tmp_path, capsys):
    from stats.__main__ import main

    assert main([str(tmp_path / "out"), "--results", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "absent") in err and "does not exist" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [["--resamples", "0"], ["--alpha", "1.5"],
                                  ["--parity-threshold", "0"]])
def test_bad_options_exit_2(tmp_path, args):
    from stats.__main__ import main

    assert main([str(tmp_path / "out"), "--results", str(tmp_path), *args]) == 2


def test_out_that_is_a_file_is_bad_input(tmp_path, capsys):
    from stats.__main__ import main

    (tmp_path / "r").mkdir()
    (tmp_path / "paper").write_text("keep me")
    assert main([str(tmp_path / "paper"), "--results", str(tmp_path / "r")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert (tmp_path / "paper").read_text() == "keep me"


def test_an_empty_results_folder_is_bad_input_and_nothing_is_written(tmp_path, capsys):
    from stats.__main__ import main

    (tmp_path / "results" / "study" / "job" / "checkpoints" / "x").mkdir(parents=True)
    (tmp_path / "results" / "study" / "job" / "checkpoints" / "x" / "result.json").write_text("{}")
    assert main([str(tmp_path / "paper"), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {tmp_path / 'results'}: no result.json found below this folder (no "
                   "job has finished there; give the study's results folder)\n")
    assert not (tmp_path / "paper").exists()


def _one_result(tmp_path):
    (tmp_path / "r" / "job").mkdir(parents=True)
    (tmp_path / "r" / "job" / "result.json").write_text("{}")   # read, then listed as skipped
    return str(tmp_path / "r")


@pytest.mark.parametrize("where", ["under a file", "a file", "in /proc"])
def test_an_out_that_cannot_be_a_folder_is_one_line_exit_2(where, tmp_path, capsys):
    from pathlib import Path

    from stats.__main__ import main

    results = _one_result(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    out, expected = {
        "under a file": (tmp_path / "notes.txt" / "paper",
                         f"{tmp_path / 'notes.txt'} is a file, not a folder"),
        "a file": (tmp_path / "notes.txt", "is a file, not a folder"),
        "in /proc": (Path("/proc/mtl-stats-test/paper"), "cannot create a folder in /proc"),
    }[where]
    if where == "in /proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    before = sorted(map(str, tmp_path.rglob("*")))
    assert main([str(out), "--results", results, "--resamples", "10"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {out}: OUT: {expected}"), err
    assert sorted(map(str, tmp_path.rglob("*"))) == before
