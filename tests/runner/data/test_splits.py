"""The committed data/: matches SHA256SUMS and its data cards; load_split and verify_checksums."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from runner.data.splits import load_split, verify_checksums
from runner.data.tasks import SPLITS, TASKS
from runner.errors import InputError

DATA = Path(__file__).resolve().parents[3] / "data"


def test_committed_data_matches_its_checksums():
    sums = verify_checksums(DATA, list(TASKS))
    assert len(sums) == 3 * len(TASKS)
    lines = [line.split("  ") for line in (DATA / "SHA256SUMS").read_text().splitlines()]
    listed = [rel for _, rel in lines]
    splits = [rel for rel in listed if rel.endswith(".parquet")]
    assert sorted(listed) == listed and sorted(splits) == sorted(sums)   # sorted, one a file
    # besides the splits, files computed from them (CONTAMINATION.json): current too
    from mtl_contract.files import sha256_file
    assert all(sha256_file(DATA / rel) == digest for digest, rel in lines)


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
    with pytest.raises(InputError, match=r"SHA256SUMS: no line for hoc/train\.parquet"):
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


GAD_ONLY = """\
[study]
name = "gad_only"
seeds = [1]

[defaults]
max_steps = 1

[[experiments]]
name = "single"
strategy = "single_task"
models = ["minilm"]
tasks = ["gad"]
"""


def _flip_a_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[100] ^= 1
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("how", ["file deleted", "task's lines removed", "folder missing"])
@pytest.mark.parametrize("command", ["run", "plan", "status"])
def test_checksums_cannot_be_switched_off(data_copy, tmp_path, capsys, how, command):
    """Issue 11.3: tampered data with SHA256SUMS deleted (or gad's lines removed) once trained
    and exited 0 with ``data_checksums: {}``; a missing --data-dir failed every job one by one.
    Now: exit 2, one line naming the file (and entry), before any job is claimed."""
    from runner.cli import main

    _flip_a_byte(data_copy / "gad" / "train.parquet")
    sums = data_copy / "SHA256SUMS"
    data, expected = data_copy, f"{sums}: checksum file missing"
    if how == "file deleted":
        sums.unlink()
    elif how == "task's lines removed":
        sums.write_text("".join(x for x in (DATA / "SHA256SUMS").read_text()
                                .splitlines(keepends=True) if "  gad/" not in x))
        expected = f"{sums}: no line for gad/train.parquet"
    else:
        data = tmp_path / "nowhere"
        expected = f"{data}: --data-dir: no such folder"
    manifest = tmp_path / "m.toml"
    manifest.write_text(GAD_ONLY)
    results = tmp_path / "res"
    rc = main([command, str(manifest), "--data-dir", str(data), "--results-dir", str(results)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"error: {expected}")
    assert not results.exists()     # nothing claimed, nothing written
