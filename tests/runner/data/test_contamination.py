"""Train/test contamination (runner.data.contamination): a planted duplicate is found and nothing
else; the n-gram, short-unit, piece and mask rules; the fast path equals the plain-Python
definition; deterministic bytes, SHA256SUMS and data cards; stale files refused; and the
optional decontaminated training (manifest key, job ids, dropped units, result.json)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtl_contract.files import sha256_file
from mtl_contract.schema import CHECKSUMS_FILE
from mtl_contract.schema import CONTAMINATION_FILE as FILE_NAME
from runner.cli import main
from runner.data import contamination as cont
from runner.data import contamination_cards as cards
from runner.data.checksums import checksums_text
from runner.data.contamination import decontaminate_train
from runner.data.prepare.writers import parquet_bytes
from runner.data.splits import load_split
from runner.data.tasks import SPLITS, get_task
from runner.data.tasks import TASKS as TASKS_ALL
from runner.errors import InputError
from runner.study.manifest import parse_manifest
from runner.study.plan import build_plan

ROOT = Path(__file__).resolve().parents[3]
TASKS = ("bc2gm", "jnlpba", "gad", "hoc", "biosses")
SIZES = {"train": 30, "validation": 8, "test": 10}


# ------------------------------------------------------------------ a synthetic data folder
def sentence(rng: random.Random, n_words: int = 16) -> list[str]:
    """Words drawn from a million made-up ones: two sentences share no 13 words by chance."""
    return [f"w{rng.randrange(10**6)}" for _ in range(n_words)]


def rows_for(task: str, split: str, rng: random.Random) -> list[dict]:
    kind, n = get_task(task).kind, SIZES[split]
    if kind == "ner":
        return [{"id": f"{i:05d}", "tokens": (w := sentence(rng)), "tags": ["O"] * len(w)}
                for i in range(n)]
    if kind == "multilabel":   # 3 sentences per abstract
        return [{"id": f"{split}{i // 3}_{i % 3}", "document_id": f"{split}{i // 3}",
                 "text": " ".join(sentence(rng)), "labels": []} for i in range(n)]
    if kind == "regression":
        return [{"id": str(i), "text_1": " ".join(sentence(rng)),
                 "text_2": " ".join(sentence(rng)), "label": 1.0} for i in range(n)]
    return [{"id": f"{split}{i}", "document_id": f"{split}{i}",
             "text": " ".join(sentence(rng)), "label": "0"} for i in range(n)]


def write_data(data_dir: Path, rows: dict[tuple[str, str], list[dict]]) -> None:
    sums = {}
    for (task, split), task_rows in rows.items():
        path = data_dir / task / f"{split}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(parquet_bytes(get_task(task), task_rows))
        sums[f"{task}/{split}.parquet"] = sha256_file(path)
        (data_dir / task / "README.md").write_text(f"# {task}\n\nA card.\n")
    (data_dir / CHECKSUMS_FILE).write_text(checksums_text(sums))


def synthetic_rows(seed: int = 0) -> dict[tuple[str, str], list[dict]]:
    rng = random.Random(seed)
    return {(t, s): rows_for(t, s, rng) for t in TASKS for s in SPLITS}


def planted_rows() -> dict[tuple[str, str], list[dict]]:
    """Two plants: bc2gm test sentence 00003 (re-cased, re-punctuated) as a gad training
    example; a 14-word run of HoC validation abstract "validation1" inside a BIOSSES training
    pair."""
    rows = synthetic_rows()
    words = rows["bc2gm", "test"][3]["tokens"]
    rows["gad", "train"][5]["text"] = ", ".join(words).upper() + "."
    hoc_words = rows["hoc", "validation"][4]["text"].split()    # abstract validation1
    rows["biosses", "train"][2]["text_1"] = "Intro " + " ".join(hoc_words[1:15]) + " end"
    return rows


@pytest.fixture
def data(tmp_path) -> Path:
    write_data(tmp_path / "data", planted_rows())
    return tmp_path / "data"


def nonempty(doc: dict) -> dict:
    return {(b, s, a, kind): ids for b, by_split in doc["overlap"].items()
            for s, by_train in by_split.items() for a, lists in by_train.items()
            for kind, ids in lists.items() if ids}


# ------------------------------------------------------------------------------ the file
def test_a_planted_duplicate_is_found_and_nothing_else(data):
    doc = cont.compute(data, TASKS)
    assert nonempty(doc) == {("bc2gm", "test", "gad", "exact"): ["00003"],
                             ("bc2gm", "test", "gad", "ngram"): ["00003"],
                             ("hoc", "validation", "biosses", "ngram"): ["validation1"]}
    assert doc["train_units_overlapping_evaluated"] == {
        "bc2gm": 0, "jnlpba": 0, "gad": 1, "hoc": 0, "biosses": 1}
    # every ordered pair is present (empty lists where nothing overlaps); HoC units: abstracts
    assert all(set(doc["overlap"][b][s]) == set(TASKS) for b in TASKS for s in ("test",
                                                                                "validation"))
    assert doc["units"]["hoc"] == {"train": 10, "validation": 3, "test": 4}
    assert set(doc["data_checksums"]) == {f"{t}/{s}.parquet" for t in TASKS for s in SPLITS}
    assert doc["n"] == 13 and doc["schema"] == "contamination/1"
    assert cont.contaminated_units(doc, "bc2gm", "test", ["jnlpba", "gad"]) == {"00003"}
    assert cont.contaminated_units(doc, "bc2gm", "test", ["jnlpba"]) == set()


def test_the_command_writes_the_same_bytes_twice_lists_them_and_fills_the_cards(data):
    def run(seed: str) -> bytes:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-m", "runner", "contamination", "--data-dir",
                        str(data), "--tasks", ",".join(TASKS)], check=True, cwd=ROOT, env=env,
                       capture_output=True)
        return (data / FILE_NAME).read_bytes()

    first, second = run("1"), run("2")
    assert first == second and first.endswith(b"\n")
    assert json.loads(first) == cont.compute(data, TASKS)
    sums = (data / CHECKSUMS_FILE).read_text().splitlines()
    assert f"{sha256_file(data / FILE_NAME)}  {FILE_NAME}" in sums
    assert sums == sorted(sums, key=lambda line: line.split("  ")[1])
    card = (data / "bc2gm" / "README.md").read_text()
    assert card.startswith("# bc2gm\n\nA card.\n") and card.count(cards.CARD_BEGIN) == 1
    assert "| gad | 1 | 1 | 1 (10.0%) | 0 | 0 | 0 (0.0%) |" in card
    assert "No overlap" in (data / "jnlpba" / "README.md").read_text()
    assert "units of gad that overlap a validation or test unit of any of these tasks (what " \
           "`decontaminate = true` drops when they are all the study's tasks): 1 of 30." \
           in (data / "gad" / "README.md").read_text().replace("\n", " ")
    assert cont.load_contamination(data / FILE_NAME, data)["tasks"] == list(TASKS)


def test_the_committed_file_is_current_and_shown_in_the_cards():
    data = ROOT / "data"
    doc = cont.load_contamination(data / FILE_NAME, data)
    assert doc["tasks"] == list(TASKS_ALL) and doc["n"] == cont.DEFAULT_N
    for task in TASKS_ALL:
        assert cards.card_section(doc, task) in (data / task / "README.md").read_text()


def test_a_stale_or_edited_file_is_refused_in_one_line(data):
    out = data / FILE_NAME
    assert main(["contamination", "--data-dir", str(data), "--tasks", ",".join(TASKS)]) == 0
    # the data changes (and is re-listed, as prepare would): the file no longer describes it
    rows = planted_rows()
    rows["jnlpba", "test"].pop()
    write_data(data, rows)
    with pytest.raises(InputError) as err:
        cont.load_contamination(out, data)
    assert str(err.value).startswith(str(out)) and "jnlpba/test.parquet" in str(err.value)
    assert "\n" not in str(err.value)
    # recomputed, then edited by hand: SHA256SUMS says so
    assert main(["contamination", "--data-dir", str(data), "--tasks", ",".join(TASKS)]) == 0
    cont.load_contamination(out, data)
    out.write_text(out.read_text().replace('"n": 13', '"n": 12'))
    with pytest.raises(InputError, match=f"^{out}: sha256 differs"):
        cont.load_contamination(out, data)
    with pytest.raises(InputError, match="schema"):
        (data / "other.json").write_text("{}")
        cont.load_contamination(data / "other.json", data)


def test_bad_input_exits_2_and_writes_nothing(data, capsys):
    out = data / "c.json"
    before = (data / CHECKSUMS_FILE).read_bytes()
    assert main(["contamination", "--data-dir", str(data), "--tasks", "bc2gm,nope", "--out", str(out)]) == 2
    assert "error: --tasks: unknown task 'nope'" in capsys.readouterr().err
    (data / "gad" / "test.parquet").write_bytes(b"not the listed file")
    assert main(["contamination", "--data-dir", str(data), "--tasks", "gad", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gad/test.parquet" in err
    assert main(["contamination", "--data-dir", str(data), "--n", "0", "--out", str(out)]) == 2
    assert not out.exists() and (data / CHECKSUMS_FILE).read_bytes() == before


# ----------------------------------------------------------------------------- the rules
def overlap(query: list[list[str]], reference: list[list[str]], n: int) -> tuple[list, list]:
    """(exact, ngram) per query unit by the fast path, checked against the definition."""
    q = cont.encode([str(i) for i in range(len(query))], query, n)
    r = cont.encode([str(i) for i in range(len(reference))], reference, n)
    exact, ngram = cont.match(q, [r])
    assert (list(exact[0]), list(ngram[0])) == cont.naive_overlap(query, reference, n)
    return list(exact[0]), list(ngram[0])


def test_ngram_rule_counts_runs_of_n_words_within_a_piece_and_between_masks():
    ref = [["p a b c d e q"], ["IL-2 receptor, alpha chain binds X"]]
    query = [["a b c d e f g"],            # shares the 5 words a..e
             ["a b c d x y z"],            # only 4 in a row
             ["a b @GENE$ c d e"],         # the mask cuts the run: 2 + 3
             ["u v a b", "c d e w"],       # the run crosses a piece boundary
             ["z", "A-B c:d E"],           # 5 words in one piece, normalised
             ["il 2 Receptor ALPHA chain!"]]
    exact, ngram = overlap(query, ref, n=5)
    assert ngram == [True, False, False, False, True, True]
    assert exact == [False] * 6


def test_short_units_count_only_by_exact_match():
    ref = [["Alpha-Beta ."], ["alpha beta gamma delta"], [","], ["@DRUG$ binds @DRUG$"]]
    query = [["alpha beta"],               # same normalised words: exact
             ["beta gamma"],               # inside a longer unit: not exact, and too short
             ["."],                        # no words: matches nothing
             ["@GENE$ BINDS @CHEMICAL$"],  # every mask is one placeholder word
             ["alpha", "beta"]]            # other pieces: not the same unit
    exact, ngram = overlap(query, ref, n=13)
    assert exact == [True, False, False, True, False]
    assert ngram == [False] * 5


def test_fast_path_equals_the_definition_on_random_units():
    rng = random.Random(3)
    vocab = ["a", "b", "c", "D", "e-f", "@GENE$", "@DRUG$", ".", "g", "h\xa0i", "Ü", "²"]

    def unit():
        return [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 6)))
                for _ in range(rng.randint(1, 2))]

    for n in (1, 2, 3, 4):
        query = [unit() for _ in range(300)]
        reference = [unit() for _ in range(300)]
        exact, ngram = overlap(query, reference, n)
        assert 0 < sum(exact) < 300 and 0 < sum(ngram) < 300   # both outcomes occur


def test_more_than_64_references_and_separator_characters_in_the_text():
    refs = [cont.encode(["r"], [[f"x{i} a b"]], 2) for i in range(70)]
    query = cont.encode(["q0", "q1"], [["a b\x00c"], ["x69 \x01a"]], 2)
    exact, ngram = cont.match(query, refs)
    assert exact.shape == (70, 2) and not exact.any()
    assert ngram[:, 0].all()                                # "a b" is in every reference
    assert list(np.flatnonzero(ngram[:, 1])) == [69]        # "x69 a" only in the last


# ---------------------------------------------------------------------- decontamination
def test_decontaminate_train_drops_exactly_the_overlapping_units(data):
    setting = {"n": 13, "against": list(TASKS), "data_checksums": {}}
    gad = load_split(data, "gad", "train")
    kept, dropped = decontaminate_train(data, "gad", gad, setting)
    assert dropped == 1 and len(kept) == 29 and "train5" not in set(kept["id"])
    assert decontaminate_train(data, "gad", gad, None) == (gad, None)
    # HoC: a training abstract that overlaps goes whole (its 3 sentences)
    rows = planted_rows()
    rows["hoc", "train"][7]["text"] = rows["bc2gm", "validation"][0]["tokens"][0] + " " + \
        " ".join(rows["jnlpba", "test"][1]["tokens"])             # in abstract train2
    write_data(data, rows)
    kept, dropped = decontaminate_train(data, "hoc", load_split(data, "hoc", "train"), setting)
    assert dropped == 3 and "train2" not in set(kept["document_id"])
    assert decontaminate_train(data, "hoc", load_split(data, "hoc", "train"),
                               {**setting, "against": ["bc2gm"]})[1] == 0


def test_decontaminate_refuses_changed_evaluated_files(data):
    sums = {"bc2gm/test.parquet": "0" * 64}
    with pytest.raises(InputError, match="bc2gm/test.parquet: missing or changed"):
        decontaminate_train(data, "gad", load_split(data, "gad", "train"),
                            {"n": 13, "against": ["bc2gm"], "data_checksums": sums})


MANIFEST = """
[study]
name = "deco"
seeds = [1]

[defaults]
max_steps = 2
max_length = 64
{extra}

[heldout]
tasks = ["ncbi_disease"]

[[experiments]]
name = "st"
strategy = "single_task"
models = ["{model}"]
tasks = ["gad", "bc2gm"]
heldout = true

[[experiments]]
name = "mt"
strategy = "multi_task"
models = ["{model}"]
task_sets = [["gad", "bc2gm"]]
"""


def plan_ids(extra: str, data_dir: Path, model: str = "minilm"):
    jobs = build_plan(parse_manifest(MANIFEST.format(extra=extra, model=model), "m.toml"),
                      data_dir).jobs
    return [j.job_id for j in jobs], jobs


def test_decontaminate_key_is_in_the_job_id_only_when_on():
    plain, jobs = plan_ids("", ROOT / "data")
    assert plan_ids("decontaminate = false", ROOT / "data")[0] == plain
    assert all("decontaminate" not in j.config for j in jobs)
    on, jobs = plan_ids("decontaminate = true", ROOT / "data")
    assert not set(on) & set(plain)
    setting = jobs[0].config["decontaminate"]
    # the study's evaluated tasks, held-out included, and their evaluated files' checksums
    assert setting["n"] == 13 and setting["against"] == ["bc2gm", "gad", "ncbi_disease"]
    assert sorted(setting["data_checksums"]) == [f"{t}/{s}.parquet" for t in setting["against"]
                                                 for s in ("test", "validation")]
    per_experiment = MANIFEST.replace('name = "mt"', 'name = "mt"\ndecontaminate = true')
    jobs = build_plan(parse_manifest(per_experiment.format(extra="", model="minilm"), "m.toml"),
                      ROOT / "data").jobs
    assert [("decontaminate" in j.config) for j in jobs] == [False, False, True]


@pytest.mark.parametrize("extra,needle", [
    ('decontaminate = "yes"', "m.toml:9: defaults.decontaminate: expected true or false"),
    ("decontaminated = true", "did you mean 'decontaminate'"),
])
def test_decontaminate_key_errors_are_one_line(extra, needle):
    with pytest.raises(InputError) as err:
        plan_ids(extra, ROOT / "data")
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tests.helpers import build_tiny_bert

    rng = random.Random(5)
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"),
                           (" ".join(sentence(rng)) for _ in range(50)))


def test_a_decontaminated_job_trains_without_the_units_and_records_how_many(data, tmp_path,
                                                                            tiny_model):
    import torch

    from runner.jobapi import JobContext
    from runner.recipes.train_job import run_job

    torch.set_num_threads(1)
    rows = planted_rows()
    write_data(data, {k: v for k, v in rows.items() if k[0] in ("bc2gm", "gad")})
    text = MANIFEST.replace("[heldout]\ntasks = [\"ncbi_disease\"]\n", "").replace(
        "heldout = true\n", "")
    results = {}
    for extra in ("", "decontaminate = true"):
        manifest = parse_manifest(text.format(extra=extra, model="tiny").replace(
            "[defaults]", f'[models]\ntiny = "{tiny_model}"\n\n[defaults]'), "m.toml")
        job = build_plan(manifest, data).jobs[0]
        assert job.tasks == ("gad",)
        job_dir = tmp_path / job.job_id
        job_dir.mkdir()
        results[extra] = run_job(job, JobContext(job_dir=job_dir, data_dir=data))
    plain, deco = results[""]["dataset_stats"]["gad"], results["decontaminate = true"][
        "dataset_stats"]["gad"]
    assert "decontaminated_dropped" not in plain and plain["train_samples"] == 30
    assert deco["decontaminated_dropped"] == 1 and deco["train_samples"] == 29
    assert results["decontaminate = true"]["config"]["decontaminate"]["against"] == [
        "bc2gm", "gad"]
