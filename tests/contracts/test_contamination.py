"""Contract: runner.data.contamination writes the ``CONTAMINATION.json`` (RQ1) that
stats.read.contamination reads and verifies, with the fields results/README.md documents; both
sides name the same test units as contaminated."""

from __future__ import annotations

import json
from pathlib import Path

from mtl_contract.files import sha256_file
from mtl_contract.schema import CHECKSUMS_FILE, CONTAMINATION_FILE, CONTAMINATION_SCHEMA
from runner.data import contamination as runner_side  # compute, contaminated_units
from runner.data import contamination_cards  # write: the file and its checksum line
from runner.data.tasks import SPLITS
from tests.contracts.readme_schema import children, documented_keys, jsonc_block
from tests.runner.data.test_contamination import SIZES, synthetic_rows, write_data

TASKS = ("bc2gm", "gad", "biosses")


def prepared(data: Path) -> dict[str, str]:
    """A prepared data folder (runner's own test builder: made-up words, SHA256SUMS, cards)
    with one planted overlap: bc2gm test sentence 00003 is gad training example 5, re-cased
    and re-punctuated; returns the data files' SHA256."""
    rows = {key: r for key, r in synthetic_rows().items() if key[0] in TASKS}
    rows["gad", "train"][5]["text"] = ", ".join(rows["bc2gm", "test"][3]["tokens"]).upper()
    write_data(data, rows)
    return {f"{t}/{s}.parquet": sha256_file(data / t / f"{s}.parquet")
            for t in TASKS for s in SPLITS}


def a_job(results: Path, data_checksums: dict[str, str]):
    from stats.read.results import parse_result

    job_dir = results / "0123456789ab"
    return parse_result({"experiment_id": job_dir.name, "experiment_type": "multi_task",
                         "seed": 1, "tasks": ["bc2gm", "gad"], "model": "minilm",
                         "token_count": 5,
                         "per_task": {t: {"primary_metric": "f1", "metrics": {"f1": 0.5}}
                                      for t in ("bc2gm", "gad")},
                         "provenance": {"data_checksums": data_checksums}},
                        job_dir / "result.json")


def test_contamination_file_round_trips_to_stats(tmp_path):
    from stats.read.contamination import USED, load_contamination, overlap_counts

    data = tmp_path / "data"
    sums = prepared(data)
    path, doc = contamination_cards.write(data, list(TASKS))
    assert path == data / CONTAMINATION_FILE

    written = json.loads(path.read_text())
    assert written == doc and written["schema"] == CONTAMINATION_SCHEMA
    documented = documented_keys(jsonc_block("## Contamination"))
    assert set(written) == children(documented)
    assert set(written["rules"]) == children(documented, "rules")
    assert set(written["units"]["bc2gm"]) == children(documented, "units", "bc2gm")
    overlap = ("overlap", "<evaluated task B>", "validation", "<training task A>")
    for b in TASKS:
        for split in written["evaluated_splits"]:
            for a in TASKS:
                assert set(written["overlap"][b][split][a]) == children(documented, *overlap)

    job = a_job(tmp_path / "results" / "demo", {k: sums[k] for k in
                                                ("bc2gm/test.parquet", "gad/train.parquet")})
    read = load_contamination(path, [job])
    assert read.status == USED, read.reason
    assert read.doc == written
    assert read.checked == [f"its line in {data / CHECKSUMS_FILE}",
                            f"the {len(sums)} data file(s) beside it",
                            "provenance.data_checksums of 1 job(s)"]
    # both sides name the same contaminated test units for every training set
    for b in TASKS:
        for trained in (["gad"], ["bc2gm", "biosses"], list(TASKS)):
            assert read.excluded(b, trained) == frozenset(
                runner_side.contaminated_units(written, b, "test", trained))
    assert read.excluded("bc2gm", ["gad"]) == {"00003"}
    assert overlap_counts(written, "bc2gm", "test", "gad") == {
        "test_task": "bc2gm", "split": "test", "train_task": "gad", "units": SIZES["test"],
        "exact": 1, "ngram": 1, "any": 1, "share": 1 / SIZES["test"]}
    # the runner's own check of the file accepts what stats accepted
    assert runner_side.load_contamination(path, data) == written


def test_a_file_computed_from_other_data_than_the_results_is_refused_by_stats(tmp_path):
    from stats.read.contamination import REFUSED, load_contamination

    data = tmp_path / "data"
    prepared(data)
    path, _ = contamination_cards.write(data, list(TASKS))
    job = a_job(tmp_path / "results" / "demo", {"bc2gm/test.parquet": "0" * 64})
    read = load_contamination(path, [job])
    assert read.status == REFUSED and "computed from other data than the results" in read.reason
