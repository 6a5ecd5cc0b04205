"""prepare: readers on fixture files of each format, determinism, and bad input (exit 2)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import ipc

from mtl_contract.schema import EXIT_BAD_INPUT, EXIT_TIME_BUDGET
from runner.cli import main as runner_main
from runner.data.prepare import readers
from runner.errors import InputError

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "assets" / "prepare" / "source"
REAL_SOURCES = REPO.parent / "shared" / "data-sources"
FIXTURE_TASKS = ("bc2gm", "chemprot", "ddi", "gad", "hoc", "pubmedqa", "biosses")


def main(argv: list[str]) -> int:
    """``python -m runner prepare ARGV``."""
    return runner_main(["prepare", *argv])


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
    # three splits per task, and the two files derived from them all
    assert len(sums) == 3 * len(FIXTURE_TASKS) + 2
    assert {"TOKEN_LENGTHS.json", "CONTAMINATION.json"} <= set(sums)
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
        for name in ("train.parquet", "validation.parquet", "test.parquet"):
            assert (out / task / name).read_bytes() == \
                (REPO / "data" / task / name).read_bytes(), (task, name)
        # the card's contamination section compares with the tasks prepared alongside (4 here,
        # 13 in data/): everything else is the same text
        assert without_contamination(out / task / "README.md") == \
            without_contamination(REPO / "data" / task / "README.md"), task
    # the derived files cover exactly the tasks in --out, and are listed in its SHA256SUMS
    lengths = json.loads((out / "TOKEN_LENGTHS.json").read_text())["tasks"]
    committed = json.loads((REPO / "data" / "TOKEN_LENGTHS.json").read_text())["tasks"]
    assert lengths == {t: committed[t] for t in tasks}
    assert sorted(json.loads((out / "CONTAMINATION.json").read_text())["tasks"]) == sorted(tasks)
    sums = (out / "SHA256SUMS").read_text()
    assert "  TOKEN_LENGTHS.json\n" in sums and "  CONTAMINATION.json\n" in sums


def without_contamination(card: Path) -> str:
    from runner.data.contamination_cards import CARD_BEGIN, CARD_END

    text = card.read_text(encoding="utf-8")
    return text[:text.index(CARD_BEGIN)] + text[text.index(CARD_END) + len(CARD_END):]


# --- hostile pickles that a few bytes make endless, and an interrupted prepare ----------------

@contextlib.contextmanager
def _time_limit(seconds: int):
    """Fail (not hang) when the block runs longer: SIGALRM interrupts a pure-Python loop."""
    def too_slow(signum, frame):
        raise AssertionError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _self_referencing():
    loop = []
    loop.append(loop)
    return loop


def _two_to_the_sixty():
    a = [0]
    for _ in range(60):
        a = [a, a]    # pickled with its memo: 60 small lists, 2**60 references as a tree
    return a


def _deeply_nested():
    deep = inner = []
    for _ in range(readers.MAX_PICKLE_DEPTH + 10):
        inner.append([])
        inner = inner[0]
    return deep


def _seed_pickle_with(src: Path, value) -> Path:
    path = src / "seed-pickle" / "gad.pkl"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"train": [{"id": "0", "text": "t", "label": 1, "x": value}],
                                   "test": [{"id": "1", "text": "t", "label": 0}]}))
    return path


@pytest.mark.parametrize("make,expected", [(_self_referencing, "reference cycle"),
                                           (_two_to_the_sixty, "more than 20,000,000 values"),
                                           (_deeply_nested, "nested deeper than 100")])
def test_hostile_pickles_are_refused_quickly(make, expected, tmp_path, capsys):
    path = _seed_pickle_with(tmp_path / "src", make())
    assert path.stat().st_size < 5000
    with _time_limit(20):
        code = main(["--source", str(tmp_path / "src"), "--out", str(tmp_path / "d"),
                     "--tasks", "gad"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT
    assert "\n" not in err and str(path) in err and expected in err, err
    assert not (tmp_path / "d").exists() and not list(tmp_path.glob(".d.prepare-*"))


def test_shared_values_are_admitted_and_counted_as_often_as_they_appear():
    shared = ["a", "b"]
    obj = {"x": [shared, shared]}
    # dict, its key, the outer list, then the shared list (itself + 2 strings) twice
    assert readers._check_builtin(obj, "f") == 3 + 2 * 3


_SLOW_PREPARE = """\
import pathlib, signal, sys, time
from runner.cli import main
from runner.data.prepare import readers
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if inherited
marker = pathlib.Path(sys.argv[1])
real = readers.read_seed_pickle
def slow(path):
    marker.write_text("reading")   # the temporary folder exists by now
    time.sleep(120)
    return real(path)
readers.read_seed_pickle = slow
sys.exit(main(["prepare", *sys.argv[2:]]))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_prepare_removes_its_temporary_folder_and_exits_3(sig, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(FIXTURES / "seed-pickle", src / "seed-pickle")
    marker, out = tmp_path / "reading", tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_PREPARE, str(marker), "--source",
                             str(src), "--out", str(out), "--tasks", "gad"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.communicate()[1] if proc.poll() is not None else "slow"
        assert list(tmp_path.glob(".data.prepare-*"))    # it was there when the signal came
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_TIME_BUDGET, err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err and "Traceback" not in err
    assert not list(tmp_path.glob(".data.prepare-*")) and not out.exists()


def test_an_error_inside_prepare_removes_its_temporary_folder(tmp_path, monkeypatch):
    from runner.data.prepare import writers

    def broken():
        raise RuntimeError("tokenizer file damaged")
    monkeypatch.setattr(writers, "load_tokenizer", broken)
    with pytest.raises(RuntimeError, match="damaged"):
        main(["--source", str(FIXTURES), "--out", str(tmp_path / "data"), "--tasks", "gad"])
    assert not list(tmp_path.glob(".data.prepare-*")) and not (tmp_path / "data").exists()


def test_out_under_a_regular_file_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    out = tmp_path / "notes.txt" / "data"
    assert main(["--source", str(FIXTURES), "--out", str(out), "--tasks", "gad"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {out}: --out: {tmp_path / 'notes.txt'} is a file, not a folder"
