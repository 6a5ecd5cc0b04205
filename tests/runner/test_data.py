"""The committed data/: matches SHA256SUMS and its data cards; load_split and verify_checksums."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from runner.data import load_split, verify_checksums
from runner.errors import InputError
from runner.tasks import SPLITS, TASKS

DATA = Path(__file__).resolve().parents[2] / "data"


def test_committed_data_matches_its_checksums():
    sums = verify_checksums(DATA, list(TASKS))
    assert len(sums) == 3 * len(TASKS)
    listed = [line.split("  ")[1] for line in (DATA / "SHA256SUMS").read_text().splitlines()]
    assert sorted(listed) == sorted(sums) == listed   # sorted, one line per split file


def test_committed_data_matches_its_cards_and_columns():
    for name, spec in TASKS.items():
        card = (DATA / name / "README.md").read_text()
        for split in SPLITS:
            meta = pq.read_metadata(DATA / name / f"{split}.parquet")
            match = re.search(rf"^\| {split} \| (\d+) \|", card, re.MULTILINE)
            assert match, (name, split)
            assert int(match.group(1)) == meta.num_rows > 0, (name, split)
            assert tuple(pq.read_schema(DATA / name / f"{split}.parquet").names) == spec.columns


def test_expected_split_sizes():
    rows = {t: [pq.read_metadata(DATA / t / f"{s}.parquet").num_rows for s in SPLITS]
            for t in TASKS}
    assert rows["bc2gm"] == [12574, 2519, 5038]
    assert rows["jnlpba"] == [14690, 3856, 3856]
    assert rows["gad"] == [4261, 535, 534]
    assert rows["pubmedqa"] == [450, 50, 500]
    assert rows["biosses"] == [64, 16, 20]
    assert rows["hoc"] == [12119, 1798, 3547]
    # within 2% of BLURB's ChemProt (18,035 / 11,268 / 15,745)
    for got, blurb in zip(rows["chemprot"], (18035, 11268, 15745)):
        assert abs(got - blurb) / blurb < 0.02


def test_load_split_types():
    df = load_split(DATA, "bc2gm", "validation")
    assert list(df.columns) == ["id", "tokens", "tags"] and len(df) == 2519
    assert isinstance(df["tokens"][0], list) and isinstance(df["tags"][0][0], str)
    assert all(len(a) == len(b) for a, b in zip(df["tokens"], df["tags"]))
    hoc = load_split(DATA, "hoc", "test")
    assert isinstance(hoc["labels"][0], list)
    assert load_split(DATA, "biosses", "test")["label"].dtype == "float64"
    assert df["id"].is_unique


@pytest.fixture
def data_copy(tmp_path) -> Path:
    out = tmp_path / "data"
    out.mkdir()
    # only gad's three lines: a task absent from the copy is also absent from its SHA256SUMS
    lines = (DATA / "SHA256SUMS").read_text().splitlines(keepends=True)
    (out / "SHA256SUMS").write_text("".join(x for x in lines if "  gad/" in x))
    shutil.copytree(DATA / "gad", out / "gad")
    return out


def test_modified_or_truncated_file_is_an_input_error(data_copy):
    assert set(verify_checksums(data_copy, ["gad"])) == {f"gad/{s}.parquet" for s in SPLITS}
    path = data_copy / "gad" / "test.parquet"
    blob = path.read_bytes()
    path.write_bytes(blob[:-10])
    with pytest.raises(InputError, match=r"gad/test\.parquet: sha256 .* modified or truncated"):
        verify_checksums(data_copy, ["gad"])
    # same size, one byte changed, mtime reset: the cache must not hide it
    st = os.stat(path)
    path.write_bytes(blob[:100] + bytes([blob[100] ^ 1]) + blob[101:])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    with pytest.raises(InputError, match="modified or truncated"):
        verify_checksums(data_copy, ["gad"])


def test_missing_file_or_entry_is_an_input_error(data_copy):
    (data_copy / "gad" / "validation.parquet").unlink()
    with pytest.raises(InputError, match="validation.parquet: listed in SHA256SUMS but missing"):
        verify_checksums(data_copy, ["gad"])
    with pytest.raises(InputError, match=r"hoc/train\.parquet: not listed"):
        verify_checksums(data_copy, ["hoc"])
    with pytest.raises(InputError, match="prepared split missing"):
        load_split(data_copy, "gad", "validation")


def test_malformed_split_is_an_input_error(data_copy):
    (data_copy / "gad" / "train.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="not a readable parquet file"):
        load_split(data_copy, "gad", "train")
    shutil.copy(data_copy / "gad" / "test.parquet", data_copy / "gad" / "train.parquet")
    assert len(load_split(data_copy, "gad", "train")) == 534
    with pytest.raises(InputError, match="unknown split"):
        load_split(data_copy, "gad", "dev")
    with pytest.raises(KeyError):
        load_split(data_copy, "nope", "train")


def test_wrong_columns_are_an_input_error(data_copy):
    # a file from another task in the wrong place
    shutil.copy(DATA / "biosses" / "test.parquet", data_copy / "gad" / "test.parquet")
    with pytest.raises(InputError, match="columns"):
        load_split(data_copy, "gad", "test")
