"""PubMedQA on its official split (issue 23): the committed data/pubmedqa splits are exactly the
authors' PQA-L ids (tests/assets/pubmedqa_pqal_split.json, a copy of the ids in the source
folder's pubmedqa-official/pqal_split.json), and the construction refuses a split that does not
partition the rows."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from runner.data.prepare import read_split_ids
from runner.data.tasks import pubmedqa
from runner.errors import InputError

REPO = Path(__file__).resolve().parents[3]
OFFICIAL = json.loads((REPO / "tests" / "assets" / "pubmedqa_pqal_split.json").read_text())


def prepared_ids(split: str) -> list[str]:
    return pq.read_table(REPO / "data" / "pubmedqa" / f"{split}.parquet",
                         columns=["id"]).column("id").to_pylist()


def test_the_prepared_test_ids_are_the_official_500():
    test = prepared_ids("test")
    assert len(test) == len(set(test)) == 500
    assert set(test) == set(OFFICIAL["test"])


def test_train_and_validation_are_fold_0_of_the_official_split():
    assert set(prepared_ids("train")) == set(OFFICIAL["train"]) and len(OFFICIAL["train"]) == 450
    assert set(prepared_ids("validation")) == set(OFFICIAL["validation"])
    card = (REPO / "data" / "pubmedqa" / "README.md").read_text(encoding="utf-8")
    assert "official split of `pubmedqa-official/pqal_split.json`" in card


def raw(ids):
    return {"all": [{"pubid": i, "question": f"q{i}", "context": {"contexts": ["a", "b"]},
                     "final_decision": "yes"} for i in ids]}


def test_the_split_ids_decide_every_row_and_a_bad_split_is_refused():
    split = {"train": ["3", "1"], "validation": ["2"], "test": ["5", "4"]}
    out = pubmedqa.to_rows(raw(["1", "2", "3", "4", "5"]), "bigbio", split_ids=split)
    assert {s: [r["id"] for r in out[s]] for s in ("train", "validation", "test")} == {
        "train": ["1", "3"], "validation": ["2"], "test": ["4", "5"]}
    assert out["notes"] == [pubmedqa.OFFICIAL_NOTE]
    with pytest.raises(ValueError, match="in no split"):
        pubmedqa.to_rows(raw(["1", "2", "3", "4", "5", "6"]), "bigbio", split_ids=split)
    with pytest.raises(ValueError, match="not a PQA-L row"):
        pubmedqa.to_rows(raw(["1", "2", "3", "4"]), "bigbio", split_ids=split)
    with pytest.raises(ValueError, match="more than one split"):
        pubmedqa.to_rows(raw(["1", "2", "3", "4", "5"]), "bigbio",
                         split_ids={**split, "validation": ["2", "1"]})
    # without the file: the hash construction, said so on the card
    assert pubmedqa.to_rows(raw([str(i) for i in range(20)]), "bigbio")["notes"] == [
        pubmedqa.HASH_NOTE]


def test_a_malformed_split_file_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "pqal_split.json"
    bad.write_text('{"train": ["1"], "validation": [], "test": ["2"]}')
    with pytest.raises(InputError) as info:
        read_split_ids(bad)
    assert str(bad) in str(info.value) and "validation" in str(info.value)
    bad.write_text("{not json")
    with pytest.raises(InputError, match="cannot read"):
        read_split_ids(bad)
