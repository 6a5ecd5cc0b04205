"""prepare: readers on fixture files of each format, determinism, and bad input (exit 2)."""

from __future__ import annotations

import hashlib
import pickle
import shutil
import sys
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import ipc

from runner.errors import EXIT_BAD_INPUT, InputError
from runner.prepare import main, readers

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "assets" / "prepare" / "source"
REAL_SOURCES = REPO.parent / "shared" / "data-sources"
FIXTURE_TASKS = ("bc2gm", "chemprot", "ddi", "gad", "hoc", "pubmedqa", "biosses")


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def fixture_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prep") / "data"
    assert main(["--source", str(FIXTURES), "--out", str(out)]) == 0
    return out


# --- readers ----------------------------------------------------------------------------------

def test_conll_tsv_reader_on_fixture():
    rows = readers.read_conll_tsv(FIXTURES / "biobert-ner/BC2GM/train.tsv")
    assert len(rows) == 6
    assert [r["id"] for r in rows] == [f"{i:05d}" for i in range(6)]
    assert rows[0]["tokens"][:3] == ["Immunohistochemical", "staining", "was"]
    assert all(len(r["tokens"]) == len(r["tags"]) and set(r["tags"]) <= {"O", "B", "I"}
               for r in rows)
    assert any("B" in r["tags"] for r in rows)


def test_bigbio_arrow_reader_on_fixture():
    table = readers.read_arrow_stream(FIXTURES / "bigbio/chemprot/train.arrow")
    rows = readers.check_table(table, "kb", "x")
    assert len(rows) == 2 and all(r["relations"] for r in rows)
    gad = readers.check_table(readers.read_arrow_stream(FIXTURES / "bigbio/gad/train.arrow"),
                              "text", "x")
    assert len(gad) == 30 and gad[0]["labels"] in (["0"], ["1"])


def test_seed_pickle_reader_on_fixture():
    obj = readers.read_seed_pickle(FIXTURES / "seed-pickle/gad.pkl")
    assert set(obj) == {"train", "test"} and len(obj["train"]) == 30
    assert set(obj["train"][0]) == {"id", "label", "text"}


# --- prepare: output, determinism, sources ----------------------------------------------------

def test_prepare_writes_every_fixture_task_with_checksums(fixture_out):
    assert sorted(p.name for p in fixture_out.iterdir() if p.is_dir()) == sorted(FIXTURE_TASKS)
    sums = {}
    for line in (fixture_out / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split("  ")
        sums[rel] = digest
    assert len(sums) == 3 * len(FIXTURE_TASKS)
    for rel, digest in sums.items():
        assert hashlib.sha256((fixture_out / rel).read_bytes()).hexdigest() == digest
    # the pair construction marks both mentions and labels with the task's classes only
    chem = pq.read_table(fixture_out / "chemprot/train.parquet").to_pylist()
    assert all("@CHEMICAL$" in r["text"] and "@GENE$" in r["text"] or "@CHEM-GENE$" in r["text"]
               for r in chem)
    assert {r["label"] for r in chem} <= {"false", "CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9"}
    assert any(r["label"] != "false" for r in chem)
    ddi = pq.read_table(fixture_out / "ddi/train.parquet").to_pylist()
    assert all(r["text"].count("@DRUG$") in (1, 2) for r in ddi)
    ddi_val = pq.read_table(fixture_out / "ddi/validation.parquet").to_pylist()
    assert not {r["document_id"] for r in ddi} & {r["document_id"] for r in ddi_val}
    hoc = pq.read_table(fixture_out / "hoc/train.parquet").to_pylist()
    assert len({r["document_id"] for r in hoc}) == 3
    assert all("none" not in r["labels"] for r in hoc) and any(not r["labels"] for r in hoc)
    assert pq.read_table(fixture_out / "biosses/test.parquet").schema.field("label").type \
        == pa.float64()
    card = (fixture_out / "chemprot/README.md").read_text()
    assert "| train | 18035 |" not in card and "BLURB" in card and "18035" in card


def test_prepare_twice_gives_the_same_bytes(fixture_out, tmp_path):
    again = tmp_path / "data"
    assert main(["--source", str(FIXTURES), "--out", str(again)]) == 0
    assert tree_bytes(again) == tree_bytes(fixture_out)


def test_rerunning_one_task_keeps_the_others(fixture_out, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(fixture_out, out)
    assert main(["--source", str(FIXTURES), "--out", str(out), "--tasks", "gad"]) == 0
    assert tree_bytes(out) == tree_bytes(fixture_out)
    assert not list(tmp_path.glob(".data.prepare-*"))


def test_seed_pickle_gives_the_same_rows_as_bigbio(fixture_out, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(FIXTURES / "seed-pickle", src / "seed-pickle")
    out = tmp_path / "data"
    assert main(["--source", str(src), "--out", str(out), "--tasks", "gad,biosses"]) == 0
    for task in ("gad", "biosses"):
        for split in ("train", "validation", "test"):
            assert (out / task / f"{split}.parquet").read_bytes() == \
                (fixture_out / task / f"{split}.parquet").read_bytes(), (task, split)


def _fake_datasets(tables: dict[tuple[str, str], dict[str, pa.Table]]):
    """A stand-in for the `datasets` library: load_dataset returns pyarrow-backed splits."""
    calls = []

    def load_dataset(path, name):
        calls.append((path, name))
        return {split: types.SimpleNamespace(data=types.SimpleNamespace(table=t))
                for split, t in tables[(path, name)].items()}
    return types.SimpleNamespace(load_dataset=load_dataset), calls


def test_hf_source_uses_datasets_and_gives_the_same_rows(fixture_out, tmp_path, monkeypatch):
    def arrow(rel):
        return readers.read_arrow_stream(FIXTURES / "bigbio" / rel)
    ner = {}
    for split, stem in (("train", "train"), ("validation", "devel"), ("test", "test")):
        rows = readers.read_conll_tsv(FIXTURES / f"biobert-ner/BC2GM/{stem}.tsv")
        ner[split] = pa.Table.from_pylist([
            {"id": str(i), "tokens": r["tokens"], "type": "gene",
             "ner_tags": [{"O": 0, "B": 1, "I": 2}[t] for t in r["tags"]]}
            for i, r in enumerate(rows)])
    fake, calls = _fake_datasets({
        ("bigbio/gad", "gad_blurb_bigbio_text"): {s: arrow(f"gad/{s}.arrow")
                                                  for s in ("train", "test")},
        ("bigbio/biosses", "biosses_bigbio_pairs"): {
            s: arrow(f"biosses/{s}.arrow") for s in ("train", "validation", "test")},
        ("bigbio/blurb", "bc2gm"): ner,
        ("bigbio/chemprot", "chemprot_bigbio_kb"): {
            s: arrow(f"chemprot/{s}.arrow") for s in ("train", "validation", "test")},
        ("qiaojin/PubMedQA", "pqa_labeled"): {"train": arrow("pubmedqa/train.arrow")}})
    monkeypatch.setitem(sys.modules, "datasets", fake)
    out = tmp_path / "data"
    tasks = ("gad", "biosses", "bc2gm", "chemprot", "pubmedqa")
    assert main(["--source", "hf", "--out", str(out), "--tasks", ",".join(tasks)]) == 0
    assert len(calls) == len(tasks)
    for task in tasks:
        for split in ("train", "validation", "test"):
            assert (out / task / f"{split}.parquet").read_bytes() == \
                (fixture_out / task / f"{split}.parquet").read_bytes(), (task, split)
    assert "Hugging Face hub" in (out / "gad" / "README.md").read_text()


def test_hf_source_without_datasets_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "datasets", None)   # import datasets -> ImportError
    assert main(["--source", "hf", "--out", str(tmp_path / "d"), "--tasks", "gad"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "datasets" in err
    assert not (tmp_path / "d").exists()


# --- bad input: one line naming the place, exit 2, --out untouched ------------------------

def _copy_fixtures(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(FIXTURES, src)
    return src


def _edit_tsv(src: Path, lineno: int, new: str) -> Path:
    path = src / "biobert-ner/BC2GM/train.tsv"
    lines = path.read_text().split("\n")
    lines[lineno - 1] = new
    path.write_text("\n".join(lines))
    return path


def _bad_no_tag(src):
    return _edit_tsv(src, 3, "positive"), ":3:"


def _bad_unknown_tag(src):
    return _edit_tsv(src, 4, "for\tB-GENE"), ":4:"


def _bad_empty_split(src):
    path = src / "biobert-ner/BC2GM/devel.tsv"
    path.write_text("\n\n")
    return path, "empty split"


def _bad_arrow_schema(src):
    path = src / "bigbio/gad/train.arrow"
    table = pa.table({"id": ["1"], "sentence": ["x"]})
    with pa.OSFile(str(path), "wb") as fh, ipc.new_stream(fh, table.schema) as w:
        w.write_table(table)
    return path, "missing column 'document_id'"


def _bad_arrow_bytes(src):
    path = src / "bigbio/hoc/test.arrow"
    path.write_bytes(path.read_bytes()[:100])
    return path, "Arrow"


def _bad_missing_split(src):
    path = src / "bigbio/chemprot/validation.arrow"
    path.unlink()
    return path, "file missing"


@pytest.mark.parametrize("make_bad", [_bad_no_tag, _bad_unknown_tag, _bad_empty_split,
                                      _bad_arrow_schema, _bad_arrow_bytes, _bad_missing_split])
def test_bad_input_is_one_line_exit_2_and_out_untouched(make_bad, tmp_path, capsys):
    src = _copy_fixtures(tmp_path)
    bad_path, expected = make_bad(src)
    out = tmp_path / "data"
    (out / "gad").mkdir(parents=True)
    (out / "gad" / "train.parquet").write_bytes(b"earlier")
    before = tree_bytes(out)
    assert main(["--source", str(src), "--out", str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert str(bad_path) in err[0] and expected in err[0], err[0]
    assert tree_bytes(out) == before
    assert not list(tmp_path.glob(".data.prepare-*"))


def test_missing_source_folder_is_one_line_exit_2(tmp_path, capsys):
    assert main(["--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(tmp_path / "nowhere") in err and "missing" in err
    assert not (tmp_path / "d").exists()


def test_ner_tokens_and_tags_of_different_length_name_the_row():
    rows = [{"id": "a", "tokens": ["x", "y"], "ner_tags": [0, 1]},
            {"id": "b", "tokens": ["x", "y", "z"], "ner_tags": [0, 1]}]
    with pytest.raises(InputError, match=r"f\.arrow: row 1: 3 tokens but 2 tags"):
        readers.ner_rows_from_bigbio(rows, "f.arrow")


# --- the malicious pickle -------------------------------------------------------------------

class _Payload:
    """Unpickling this would call open(marker, "w"), creating the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_and_none_of_its_code_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    src = tmp_path / "src"
    (src / "seed-pickle").mkdir(parents=True)
    data = pickle.dumps({"train": [{"id": "0", "text": "t", "label": 1}, _Payload(str(marker))],
                         "test": [{"id": "1", "text": "t", "label": 0}]})
    (src / "seed-pickle" / "gad.pkl").write_bytes(data)
    assert main(["--source", str(src), "--out", str(tmp_path / "d"), "--tasks", "gad"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "gad.pkl" in err and "refused" in err
    assert not marker.exists()
    assert not (tmp_path / "d").exists()
    # the second lock alone (the unpickler, without the opcode scan) refuses it too
    import io
    with pytest.raises(pickle.UnpicklingError, match="refused import"):
        readers._RestrictedUnpickler(io.BytesIO(data)).load()
    assert not marker.exists()


# --- the real corpora, only where they are (never needed) -----------------------------------

@pytest.mark.skipif(not REAL_SOURCES.is_dir(), reason="../shared/data-sources not present")
def test_committed_data_is_what_prepare_makes_from_the_real_sources(tmp_path):
    out = tmp_path / "data"
    tasks = ("gad", "biosses", "pubmedqa", "s800")
    assert main(["--source", str(REAL_SOURCES), "--out", str(out), "--tasks", ",".join(tasks)]) == 0
    for task in tasks:
        for name in ("train.parquet", "validation.parquet", "test.parquet", "README.md"):
            assert (out / task / name).read_bytes() == \
                (REPO / "data" / task / name).read_bytes(), (task, name)
