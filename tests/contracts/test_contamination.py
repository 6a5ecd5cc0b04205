"""Contract: runner.data.contamination writes the ``CONTAMINATION.json`` (RQ1) that
stats.read.contamination reads and verifies, with the fields results/README.md documents; both
sides name the same test units as contaminated."""

from __future__ import annotations

import json
import random
from pathlib import Path

from mtl_contract.files import sha256_file
from mtl_contract.schema import CHECKSUMS_FILE, CONTAMINATION_FILE, CONTAMINATION_SCHEMA
from runner.data import contamination as runner_side   # compute, write, contaminated_units
from runner.data.checksums import checksums_text
from runner.data.prepare.writers import parquet_bytes
from runner.data.tasks import SPLITS, get_task
from tests.contracts.readme_schema import children, documented_keys, jsonc_block

TASKS = ("bc2gm", "gad", "biosses")
SIZES = {"train": 20, "validation": 6, "test": 8}


def made_up(rng: random.Random, n: int = 16) -> list[str]:
    """Words from a million made-up ones: two units share no 13 words by chance."""
    return [f"w{rng.randrange(10**6)}" for _ in range(n)]


def rows_for(task: str, split: str, rng: random.Random) -> list[dict]:
    kind, n = get_task(task).kind, SIZES[split]
    if kind == "ner":
        return [{"id": f"{i:05d}", "tokens": (w := made_up(rng)), "tags": ["O"] * len(w)}
                for i in range(n)]
    if kind == "regression":
        return [{"id": str(i), "text_1": " ".join(made_up(rng)),
                 "text_2": " ".join(made_up(rng)), "label": 1.0} for i in range(n)]
    return [{"id": f"{split}{i}", "document_id": f"{split}{i}",
             "text": " ".join(made_up(rng)), "label": "0"} for i in range(n)]


def prepared(data: Path) -> dict[str, str]:
    """A prepared data folder with SHA256SUMS and cards, one planted overlap: bc2gm test
    sentence 00003 is gad training example 5 (re-cased and re-punctuated)."""
    rng = random.Random(0)
    rows = {(t, s): rows_for(t, s, rng) for t in TASKS for s in SPLITS}
    rows["gad", "train"][5]["text"] = ", ".join(rows["bc2gm", "test"][3]["tokens"]).upper()
    sums = {}
    for (task, split), task_rows in rows.items():
        path = data / task / f"{split}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(parquet_bytes(get_task(task), task_rows))
        sums[f"{task}/{split}.parquet"] = sha256_file(path)
        (data / task / "README.md").write_text(f"# {task}\n\nA card.\n")
    (data / CHECKSUMS_FILE).write_text(checksums_text(sums))
    return sums


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
    path, doc = runner_side.write(data, list(TASKS))
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
    path, _ = runner_side.write(data, list(TASKS))
    job = a_job(tmp_path / "results" / "demo", {"bc2gm/test.parquet": "0" * 64})
    read = load_contamination(path, [job])
    assert read.status == REFUSED and "computed from other data than the results" in read.reason
