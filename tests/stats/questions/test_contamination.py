"""Issue 13, stats side: the contamination file is verified, tabulated and drawn, and every
RQ1 / RQ5 / RQ2 comparison is recomputed on its clean test units."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from stats.core.study import Options
from stats.questions import rq2
from stats.read.contamination import USED, Contamination, load_contamination
from stats.read.heldout import load_heldout
from stats.report import build_paper
from tests.stats.conftest import flat, run_cli
from tests.stats.render.test_latex import compile_tables
from tests.stats.synthetic import (
    DATA_CHECKSUMS,
    PRIMARY,
    Design,
    contamination_doc,
    leaked_ids,
    metrics_of,
    write_study,
)
from tests.stats.test_report import strict_json

SMALL = {"bc2gm": 300, "chemprot": 200, "biosses": 40}
LEAKED = 60  # bc2gm test units the multi-task job predicts perfectly ...
# ... because they overlap chemprot's training data, which it trained on
OVERLAPS = {("bc2gm", "chemprot"): leaked_ids("bc2gm", LEAKED)}


def write_doc(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def leak(tmp_path_factory):
    """MT's whole bc2gm gain sits on 60 of 300 test units that overlap chemprot's training
    data (MT = ST + noise elsewhere); the CLI reads the matching contamination file."""
    root = tmp_path_factory.mktemp("leak")
    design = Design(n_units=SMALL, leaked={"bc2gm": LEAKED}, data_checksums=DATA_CHECKSUMS)
    write_study(root / "results", design)
    cont = write_doc(root / "elsewhere" / "CONTAMINATION.json", contamination_doc(design, OVERLAPS))
    proc = run_cli(str(root / "paper"), "--results", str(root / "results"), "--resamples", "200",
                   "--contamination", str(cont), cwd=root)
    assert proc.returncode == 0, proc.stderr
    return {"root": root, "out": root / "paper", "proc": proc, "cont": cont,
            "stats": strict_json(root / "paper" / "statistics.json"),
            "summary": flat((root / "paper" / "SUMMARY.txt").read_text())}


def rows(stats, rq, task):
    return [r for f in stats[rq] for r in f["rows"] if r["task"] == task]


def test_gain_from_contaminated_units_does_not_hold_on_clean_units(leak):
    stats, summary = leak["stats"], leak["summary"]
    assert "clean-unit results for 6 RQ1/RQ5 row(s)" in leak["proc"].stdout
    (rq1,) = rows(stats, "rq1", "bc2gm")
    assert rq1["significant"] is True and rq1["mean_diff"] > 0.03  # full test: MT > ST
    clean = rq1["clean"]
    assert clean["train_tasks"] == ["bc2gm", "biosses", "chemprot"]
    assert (clean["units"]["test_units"], clean["units"]["dropped"], clean["units"]["clean"]) \
        == (300, LEAKED, 300 - LEAKED)
    assert clean["n"] == 5 and clean["significant"] is False and abs(clean["mean_diff"]) < 0.005
    assert clean["paired_bootstrap"]["n_units"] == 300 - LEAKED
    (rq5,) = rows(stats, "rq5", "bc2gm")
    assert rq5["verdict"] == "genuine transfer" and rq5["clean"]["verdict"] == "no multi-task gain"
    for task in ("chemprot", "biosses"):  # nothing dropped: the same numbers
        (r,) = rows(stats, "rq1", task)
        assert r["clean"]["units"]["dropped"] == 0
        assert r["clean"]["values_a"] == pytest.approx(r["values_a"], abs=1e-12)
    assert ("RQ1 tiny mt_all vs st, bc2gm: on the full test set multi-task is significantly "
            "better than single-task") in summary
    assert ("but on the 240 clean test units (60 of 300 dropped: they overlap training units "
            "of bc2gm, biosses or chemprot) there is no significant difference") in summary
    assert "RQ5 tiny mt_all vs tc, bc2gm: on the full test set the verdict is 'genuine " \
           "transfer'" in summary and "the verdict is 'no multi-task gain'" in summary
    assert len(stats["contamination"]["changes"]) == 2  # bc2gm in RQ1 and RQ5, nothing else
    assert "PubMedBERT and BioBERT were pretrained on PubMed" in summary
    assert "bc2gm: 60 of its 300 test units (20.0%) overlap chemprot's training data" in summary


def test_clean_metric_is_the_metric_of_the_unit_subset(leak):
    """Each job's clean value equals the README formula (synthetic.metrics_of, not
    stats.core.metrics) on its predictions less the overlapping units."""
    drop = set(OVERLAPS[("bc2gm", "chemprot")])
    for task in ("bc2gm", "chemprot", "biosses"):
        (row,) = rows(leak["stats"], "rq1", task)
        clean = row["clean"]
        for ids, values in ((clean["job_ids_a"], clean["values_a"]),
                            (clean["job_ids_b"], clean["values_b"])):
            for job_id, value in zip(ids, values):
                frame = pd.read_parquet(leak["root"] / "results" / job_id / "predictions"
                                        / f"{task}.parquet")
                subset = frame[~frame["unit_id"].isin(drop)]
                assert len(subset) == len(frame) - (LEAKED if task == "bc2gm" else 0)
                assert value == pytest.approx(metrics_of(task, subset)[PRIMARY[task]], abs=1e-12)


def test_overlap_table_figure_and_csv(leak, tmp_path):
    out = leak["out"]
    table = (out / "table_contamination.tex").read_text()
    assert r"bc2gm & 300 & chemprot & 0 & 60 & 60 & 20.0\% \\" in table
    assert "13-gram" in table
    changed = [line for line in (out / "table_clean_units.tex").read_text().splitlines()
               if "(changes)" in line]
    assert len(changed) == 2 and all(" & bc2gm & 60/300 & " in line for line in changed)
    for ext in ("pdf", "png"):
        assert (out / f"fig_contamination.{ext}").stat().st_size > 1000
    csv = pd.read_csv(out / "contamination.csv")
    assert len(csv) == 3 * 2 * 3  # test task x split x training task
    hit = csv[(csv.test_task == "bc2gm") & (csv.split == "test") & (csv.train_task == "chemprot")]
    assert hit[["ngram", "any"]].values.tolist() == [[60, 60]]
    compile_tables(out, tmp_path, ("table_contamination.tex", "table_clean_units.tex"))


def test_stale_file_is_refused_in_one_line_and_the_paper_still_builds(tmp_path):
    design = Design(tasks=("bc2gm", "chemprot"), seeds=(1, 2, 3), n_units=SMALL,
                    leaked={"bc2gm": LEAKED}, data_checksums=DATA_CHECKSUMS)
    write_study(tmp_path / "results", design)
    stale = {**DATA_CHECKSUMS, "bc2gm/test.parquet": "0" * 64}  # computed from other data
    cont = write_doc(tmp_path / "CONTAMINATION.json", contamination_doc(
        design, OVERLAPS, {k: v for k, v in stale.items() if k.split("/")[0] in design.tasks}))
    proc = run_cli(str(tmp_path / "paper"), "--results", str(tmp_path / "results"),
                   "--resamples", "50", "--contamination", str(cont), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if "contamination" in x]
    assert f"{cont}: data_checksums.bc2gm/test.parquet: computed from other data than the " \
           "results: job " in line
    summary = flat((tmp_path / "paper" / "SUMMARY.txt").read_text())
    assert f"contamination file refused, full-test results only: {cont}: " in summary
    assert "clean-unit results: not computed" in summary
    stats = strict_json(tmp_path / "paper" / "statistics.json")
    assert stats["contamination"]["status"] == "refused"
    assert all("clean" not in r for f in stats["rq1"] + stats["rq5"] for r in f["rows"])
    (row,) = rows(stats, "rq1", "bc2gm")
    assert row["significant"] is True  # the full-test results are all there
    assert "refused" in (tmp_path / "paper" / "table_clean_units.tex").read_text()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_file_is_checked_against_the_data_beside_it(tmp_path):
    """Like runner.contamination.load_contamination: the data files' SHA256, the file's own
    line in SHA256SUMS; a malformed entry is named; an unverifiable file is not trusted."""
    design = Design(tasks=("bc2gm", "chemprot"))
    data = tmp_path / "data"
    files = {f"{t}/{s}.parquet": f"{t} {s} rows".encode() for t in design.tasks
             for s in ("train", "validation", "test")}
    for rel, content in files.items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(content)
    doc = contamination_doc(design, OVERLAPS, {rel: sha(c) for rel, c in files.items()})
    path = write_doc(data / "CONTAMINATION.json", doc)
    sums = {**{rel: sha(c) for rel, c in files.items()}, path.name: sha(path.read_bytes())}
    (data / "SHA256SUMS").write_text("".join(f"{d}  {r}\n" for r, d in sorted(sums.items())))
    ok = load_contamination(path, [])
    assert ok.status == USED and ok.checked == [f"its line in {data / 'SHA256SUMS'}",
                                                "the 6 data file(s) beside it"]

    (data / "bc2gm" / "test.parquet").write_bytes(b"re-prepared")
    refused = load_contamination(path, [])
    assert refused.status == "refused" and refused.reason == (
        f"{path}: data_checksums.bc2gm/test.parquet: stale: {data / 'bc2gm' / 'test.parquet'} "
        "has changed since it was computed; run `python -m runner contamination` again")
    (data / "bc2gm" / "test.parquet").write_bytes(files["bc2gm/test.parquet"])

    path.write_text(json.dumps(doc, indent=2))  # edited after SHA256SUMS listed it
    assert "its sha256 differs from its line in" in load_contamination(path, []).reason

    alone = write_doc(tmp_path / "copy" / "CONTAMINATION.json", doc)
    assert "cannot be verified" in load_contamination(alone, []).reason
    del doc["overlap"]["bc2gm"]["test"]["chemprot"]["exact"]
    write_doc(alone, doc)
    assert load_contamination(alone, []).reason == (
        f"{alone}: overlap.bc2gm.test.chemprot.exact: expected a list of unit ids")


def test_an_edited_file_without_its_sha256sums_line_is_refused(tmp_path):
    """Issue 25: the file's SHA256SUMS line removed and its overlap lists emptied read as
    "used, 0 overlap"; now the missing line refuses it, and so do emptied lists wherever
    the file counts overlapping training units.  Both branches of each check run."""
    design = Design(tasks=("bc2gm", "chemprot"))
    data = tmp_path / "data"
    files = {f"{t}/{s}.parquet": f"{t} {s} rows".encode() for t in design.tasks
             for s in ("train", "validation", "test")}
    for rel, content in files.items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(content)
    doc = contamination_doc(design, OVERLAPS, {rel: sha(c) for rel, c in files.items()})
    doc["train_units_overlapping_evaluated"]["chemprot"] = 7
    path = write_doc(data / "CONTAMINATION.json", doc)
    data_lines = "".join(f"{sha(c)}  {r}\n" for r, c in sorted(files.items()))
    (data / "SHA256SUMS").write_text(data_lines + f"{sha(path.read_bytes())}  {path.name}\n")
    assert load_contamination(path, []).status == USED
    for pairs in doc["overlap"].values():
        for entry in pairs.values():
            for lists in entry.values():
                lists["exact"], lists["ngram"] = [], []
    write_doc(path, doc)
    (data / "SHA256SUMS").write_text(data_lines)   # its line removed
    refused = load_contamination(path, [])
    assert refused.status == "refused" and refused.reason == (
        f"{path}: not listed in {data / 'SHA256SUMS'} beside it, so it cannot be checked "
        "for edits; run `python -m runner contamination` again")
    (data / "SHA256SUMS").unlink()   # no SHA256SUMS at all: the data files still verify it
    assert load_contamination(path, []).reason == (
        f"{path}: train_units_overlapping_evaluated.chemprot: 7 training unit(s) of chemprot "
        "overlap evaluated units, but no overlap list names a unit for chemprot: the lists "
        "were emptied or cut; run `python -m runner contamination` again")
    doc["train_units_overlapping_evaluated"]["chemprot"] = 0   # truly no overlap
    write_doc(path, doc)
    assert load_contamination(path, []).status == USED


def test_default_file_in_the_working_folder_absent_and_missing(tmp_path):
    design = Design(tasks=("bc2gm", "chemprot"), seeds=(1, 2), n_units=SMALL,
                    data_checksums=DATA_CHECKSUMS)
    write_study(tmp_path / "results", design)
    only_bc2gm = Design(tasks=("bc2gm",), n_units=SMALL)
    write_doc(tmp_path / "work" / "data" / "CONTAMINATION.json",
              contamination_doc(only_bc2gm, {}))
    args = ["--results", str(tmp_path / "results"), "--resamples", "20"]
    found = run_cli(str(tmp_path / "p1"), *args, cwd=tmp_path / "work")
    assert found.returncode == 0, found.stderr
    assert "contamination: data/CONTAMINATION.json (n = 13), verified against " \
           "provenance.data_checksums of" in found.stdout
    stats = strict_json(tmp_path / "p1" / "statistics.json")
    (chem,) = rows(stats, "rq1", "chemprot")
    assert chem["clean"]["reason"] == "chemprot is not among the contamination file's tasks"
    (bc2gm,) = rows(stats, "rq1", "bc2gm")  # its MT job also trained on chemprot
    assert "training task(s) chemprot not among" in bc2gm["clean"]["reason"]

    absent = run_cli(str(tmp_path / "p2"), *args, cwd=tmp_path)
    assert absent.returncode == 0, absent.stderr
    assert "contamination not measured: no contamination file: data/CONTAMINATION.json is " \
           "not in the working folder" in (tmp_path / "p2" / "SUMMARY.txt").read_text()

    missing = run_cli(str(tmp_path / "p3"), *args, "--contamination", "nope.json", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        "error: nope.json: --contamination: contamination file does not exist (run `python -m "
        "runner contamination`, or leave --contamination out)")
    assert not (tmp_path / "p3").exists()


def test_rq2_rows_on_clean_units(tmp_path):
    """Held-out task units overlapping a source task's training data leave both sides; the
    clean delta is the F1 of the remaining units, and the clean table shows the RQ2 row."""
    from tests.stats.questions.test_rq2 import write_adapter_pair

    root = tmp_path / "results"
    for seed in (1, 2):
        write_adapter_pair(root, seed)
    dropped = [f"u{i:04d}" for i in range(100)]
    design = Design(tasks=("bc2gm", "jnlpba", "ncbi_disease"),
                    n_units={"bc2gm": 10, "jnlpba": 10, "ncbi_disease": 400})
    doc = contamination_doc(design, {("ncbi_disease", "jnlpba"): dropped},
                            {"bc2gm/test.parquet": "a" * 64})
    data = tmp_path / "data"
    path = write_doc(data / "CONTAMINATION.json", doc)
    (data / "SHA256SUMS").write_text(f"{'a' * 64}  bc2gm/test.parquet\n"  # data not here
                                     f"{sha(path.read_bytes())}  {path.name}\n")

    from stats.read.results import load_results
    jobs = load_results([root]).jobs
    runs, _ = load_heldout(jobs)
    (row,) = rq2.comparisons(runs, resamples=300, rng_seed=3,
                             contamination=Contamination(path, USED, doc=doc))
    clean = row["clean"]
    assert clean["train_tasks"] == ["bc2gm", "jnlpba", "ncbi_disease"]
    assert clean["units"] == {"test_units": 400, "dropped": 100, "clean": 300,
                              "overlapping_in_split": 100}
    f1 = {}
    for side in ("mt", "st"):
        values = []
        for p in sorted(root.glob(f"{side}*/heldout/ncbi_disease/seed*/predictions/*.parquet")):
            frame = pd.read_parquet(p)
            sub = frame[~frame["unit_id"].isin(dropped)]
            tp, fp, fn = (int(sub[c].sum()) for c in ("tp", "fp", "fn"))
            values.append(2 * tp / (2 * tp + fp + fn))
        f1[side] = np.mean(values)
    assert clean["mean_diff"] == pytest.approx(f1["mt"] - f1["st"], abs=1e-12)
    assert clean["bootstrap"]["n_units"] == 300 and clean["p_holm"] is not None
    assert any(line.startswith("    clean units (100 of 400 dropped: they overlap training "
                               "units of bc2gm, jnlpba or ncbi_disease; 300 left)")
               for line in rq2.summary_lines([row], None))

    build_paper(tmp_path / "paper", [root], Options(resamples=50), contamination=path)
    table = (tmp_path / "paper" / "table_clean_units.tex").read_text()
    assert r"RQ2 & minilm & mt\_adapter vs st\_matched (bc2gm) & ncbi\_disease & 100/400 &" \
        in table


def test_results_not_tied_to_the_contamination_file_say_so_in_one_line(tmp_path):
    """Issue 24: a file whose overlapping unit ids do not occur in the predictions (another
    id scheme), or whose test-unit count differs from the results' n_test, would otherwise
    drop nothing and read "0 dropped"; the paper says the results are not tied to it."""
    design = Design(tasks=("bc2gm", "chemprot"), n_units={"bc2gm": 300, "chemprot": 200},
                    data_checksums=DATA_CHECKSUMS, write_predictions=True)
    write_study(tmp_path / "results", design)
    other_ids = [f"BC2GM-test-{i}" for i in range(40)]  # not the predictions' unit ids
    doc = contamination_doc(design, {("bc2gm", "chemprot"): other_ids})
    doc["units"]["chemprot"]["test"] = 250  # the results scored 200
    cont = write_doc(tmp_path / "data" / "CONTAMINATION.json", doc)
    proc = run_cli(str(tmp_path / "paper"), "--results", str(tmp_path / "results"),
                   "--resamples", "50", "--contamination", str(cont), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # one logical line each (SUMMARY folds lines over 160 characters, issue 27)
    summary = flat((tmp_path / "paper" / "SUMMARY.txt").read_text())
    tied = [line for line in summary.splitlines()
            if line.startswith("results not tied to the contamination file")]
    assert len(tied) == 2  # preamble and the contamination block, one line each
    assert ("bc2gm: 40 of the 40 unit ids it lists as overlapping do not occur in job"
            in tied[0])
    assert "chemprot: job" in tied[0] and "scored 200 test units, the file counts 250" in tied[0]
    assert "results not tied to the contamination file" in proc.stderr
    stats = strict_json(tmp_path / "paper" / "statistics.json")
    (rq1,) = rows(stats, "rq1", "bc2gm")
    assert rq1["clean"]["n"] == 0 and "not tied to the contamination file" in \
        rq1["clean"]["reason"]
    assert "0 dropped" not in summary and "(0 of 300 dropped" not in summary
    # the matching file: tied, no such line
    good = write_doc(tmp_path / "data2" / "CONTAMINATION.json", contamination_doc(
        design, {("bc2gm", "chemprot"): leaked_ids("bc2gm", 40)}))
    proc = run_cli(str(tmp_path / "paper2"), "--results", str(tmp_path / "results"),
                   "--resamples", "50", "--contamination", str(good), cwd=tmp_path)
    assert proc.returncode == 0 and "not tied" not in proc.stderr
    assert "not tied" not in (tmp_path / "paper2" / "SUMMARY.txt").read_text()


@pytest.mark.parametrize("capped", [True, False], ids=["max_eval_examples", "no cap"])
def test_a_capped_test_subset_is_tied_to_the_file_it_was_drawn_from(capped, tmp_path):
    """A study that scored max_eval_examples of each test set (the demo) scored fewer units
    than the file counts by design: still tied to it (its clean units are the subset's).
    The same count without the cap in the jobs' config is another test set: not tied."""
    design = Design(tasks=("bc2gm", "chemprot"), n_units={"bc2gm": 300, "chemprot": 200},
                    data_checksums=DATA_CHECKSUMS, write_predictions=True)
    write_study(tmp_path / "results", design)
    if capped:
        for result in (tmp_path / "results").rglob("result.json"):
            doc = json.loads(result.read_text())
            doc["config"]["max_eval_examples"] = 300
            result.write_text(json.dumps(doc))
    doc = contamination_doc(design, {("bc2gm", "chemprot"): []})
    doc["units"]["bc2gm"]["test"] = 5038  # the whole test set; the jobs scored 300 of it
    cont = write_doc(tmp_path / "data" / "CONTAMINATION.json", doc)
    proc = run_cli(str(tmp_path / "paper"), "--results", str(tmp_path / "results"),
                   "--resamples", "20", "--contamination", str(cont), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    untied = "results not tied to the contamination file" in proc.stderr
    assert untied is not capped
