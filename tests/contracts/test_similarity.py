"""Contract: runner.recipes.similarity writes the ``task_similarity.json`` (RQ4) that
stats.read.similarity reads, with the fields results/README.md documents."""

from __future__ import annotations

import json
import random
from pathlib import Path

from mtl_contract.schema import SIMILARITY_FILE, SIMILARITY_SCHEMA
from runner.data.prepare.writers import parquet_bytes
from runner.data.tasks import get_task
from runner.recipes.similarity import compute, write  # the writer of the file
from tests.contracts.readme_schema import children, documented_keys, jsonc_block

TASKS = ("bc2gm", "jnlpba", "gad", "biosses")
WORDS = ["protein", "gene", "binding", "cells", "the", "of", "expression", "p53", "kinase",
         "tumour", "patients", "risk", "similar", "sentence", "pair"]


def train_rows(task: str, rng: random.Random, n: int = 12) -> list[dict]:
    """Rows of the prepared columns of ``task``: a shared vocabulary, different labels."""
    kind = get_task(task).kind

    def text() -> list[str]:
        return [rng.choice(WORDS) for _ in range(rng.randint(4, 10))]

    if kind == "ner":
        return [{"id": f"{i}", "tokens": (w := text()),
                 "tags": [rng.choice("OOB") for _ in w]} for i in range(n)]
    if kind == "regression":
        return [{"id": f"{i}", "text_1": " ".join(text()), "text_2": " ".join(text()),
                 "label": float(rng.randint(0, 4))} for i in range(n)]
    return [{"id": f"{i}", "document_id": f"d{i}", "text": " ".join(text()),
             "label": rng.choice("01")} for i in range(n)]


def test_similarity_file_round_trips_to_stats(tmp_path):
    from stats.read.results import parse_result
    from stats.read.similarity import find_similarity_for_jobs, load_similarity, similarity_value

    rng = random.Random(4)
    data = tmp_path / "data"
    for task in TASKS:
        (data / task).mkdir(parents=True)
        (data / task / "train.parquet").write_bytes(
            parquet_bytes(get_task(task), train_rows(task, rng)))
    study = tmp_path / "results" / "demo"
    out = study / SIMILARITY_FILE
    write(compute(TASKS, data), out)

    written = json.loads(out.read_text())
    documented = documented_keys(jsonc_block("### (c) `task_similarity.json`"))
    assert set(written) == children(documented)
    assert written["schema"] == SIMILARITY_SCHEMA and written["tasks"] == list(TASKS)
    # wordpiece_jaccard only with a tokenizer (README: "absent without --tokenizer")
    assert set(written["measures"]) == children(documented, "measures") - {"wordpiece_jaccard"}
    assert set(written["direction"]) == children(documented, "measures")
    for task in TASKS:
        assert set(written["per_task"][task]) == children(documented, "per_task", "bc2gm")
    assert set(written["data_checksums"]) == {f"{t}/train.parquet" for t in TASKS}

    job_dir = study / "0123456789ab"
    job = parse_result({"experiment_id": job_dir.name, "experiment_type": "multi_task",
                        "seed": 1, "tasks": ["bc2gm", "gad"], "model": "minilm",
                        "token_count": 5,
                        "per_task": {t: {"primary_metric": "f1", "metrics": {"f1": 0.5}}
                                     for t in ("bc2gm", "gad")}}, job_dir / "result.json")
    assert find_similarity_for_jobs([job]) == out   # beside the study's job folders
    read = load_similarity(out)
    assert read == written
    for measure, matrix in written["measures"].items():
        for i, a in enumerate(TASKS):
            for j, b in enumerate(TASKS):
                assert similarity_value(read, measure, a, b) == matrix[i][j]
    # the values the writer computed are in stats' range: similarities and the divergence
    # in [0, 1], a task against itself the same distribution
    assert all(written["measures"]["unigram_jsd"][i][i] == 0.0 for i in range(len(TASKS)))
    assert written["measures"]["word_jaccard"][0][1] is not None
    assert Path(out).parent == job_dir.parent
