"""The task registry: every study and held-out task declared once, consistently."""

import dataclasses

import pytest

from runner.data.tasks import HELD_OUT_TASKS, STUDY_TASKS, TASKS, get_task
from runner.data.tasks.relations import carve_by_document, hash_order, split_sentences

EXPECTED_PRIMARY = {"bc2gm": "f1", "jnlpba": "f1", "chemprot": "macro_f1", "ddi": "macro_f1",
                    "gad": "f1", "hoc": "micro_f1", "pubmedqa": "accuracy", "biosses": "pearson",
                    "ncbi_disease": "f1", "bc5cdr_chem": "f1", "bc5cdr_disease": "f1",
                    "s800": "f1", "linnaeus": "f1"}


def test_registry_lists_the_study_and_held_out_tasks():
    assert STUDY_TASKS == ("bc2gm", "jnlpba", "chemprot", "ddi", "gad", "hoc", "pubmedqa",
                           "biosses")
    assert set(HELD_OUT_TASKS) == {"ncbi_disease", "bc5cdr_chem", "bc5cdr_disease", "s800",
                                   "linnaeus"}
    for name, spec in TASKS.items():
        assert spec.name == name
        assert spec.primary_metric == EXPECTED_PRIMARY[name]
        assert spec.metrics[0] == spec.primary_metric
        assert spec.sources, name


def test_get_task_unknown_name_is_a_key_error():
    assert get_task("gad") is TASKS["gad"]
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        get_task("nope")


def test_spec_is_frozen_and_stat_spec_follows_results_readme():
    spec = get_task("chemprot")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"
    assert spec.stat_spec() == {"kind": "classes",
                                "labels": ["false", "CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9"],
                                "scored": [1, 2, 3, 4, 5]}
    assert get_task("gad").stat_spec()["scored"] == [get_task("gad").labels.index("1")]
    assert get_task("pubmedqa").stat_spec()["scored"] == [0, 1, 2]
    assert get_task("ddi").labels == ("false", "EFFECT", "MECHANISM", "ADVISE", "INT")
    assert get_task("bc2gm").stat_spec() == {"kind": "counts"}
    assert get_task("hoc").stat_spec() == {"kind": "counts"}
    assert get_task("biosses").stat_spec() == {"kind": "pairs"}
    assert len(get_task("hoc").labels) == 10


def test_columns_per_kind_match_the_contract():
    assert get_task("bc2gm").columns == ("id", "tokens", "tags")
    assert get_task("gad").columns == ("id", "document_id", "text", "label")
    assert get_task("pubmedqa").columns == ("id", "document_id", "question", "context", "label")
    assert get_task("pubmedqa").text_fields == ("question", "context")
    assert get_task("hoc").columns == ("id", "document_id", "text", "labels")
    assert get_task("biosses").columns == ("id", "text_1", "text_2", "label")


def test_no_task_declares_its_own_sequence_length():
    """The manifest's max_length (or max_length_per_task) is what a job cuts at: a length in
    the task declaration silently cut 256 / 128 while result.json said 512 (issue 12)."""
    assert "max_length" not in {f.name for f in dataclasses.fields(TASKS["gad"])}
    from runner.data.prepare.writers import CARD_MAX_LENGTH, data_card
    card = data_card(get_task("gad"), "test", {"train": []}, [], None)
    assert f"max_length: {CARD_MAX_LENGTH} tokens" in card and CARD_MAX_LENGTH == 512


def test_a_bad_spec_is_refused():
    spec = get_task("gad")
    with pytest.raises(ValueError, match="primary_metric"):
        dataclasses.replace(spec, primary_metric="accuracy")
    with pytest.raises(ValueError, match="kind"):
        dataclasses.replace(spec, kind="seq2seq")


def test_sentence_splitter_never_cuts_inside_a_mention():
    from runner.data.tasks.relations import Mention

    text = "Aspirin inhib. COX-2 here. Then B. Cells grew.\nTitle two"
    plain = split_sentences(text, 0, [])
    assert [text[a:b].strip() for a, b in plain] == [
        "Aspirin inhib.", "COX-2 here.", "Then B.", "Cells grew.", "Title two"]
    # a mention "B. Cells" spanning the cut after "B." keeps those two sentences together
    start = text.index("B. Cells")
    guarded = split_sentences(text, 0, [Mention("m", "GENE", start, start + 8)])
    assert "Then B. Cells grew." in [text[a:b].strip() for a, b in guarded]


def test_hash_carving_is_deterministic_and_order_free():
    rows = [{"document_id": f"d{i % 20}", "id": str(i)} for i in range(100)]
    train, val = carve_by_document(rows, "salt:", 0.1)
    _, val2 = carve_by_document(list(reversed(rows)), "salt:", 0.1)
    assert len({r["document_id"] for r in val}) == 2
    assert {r["id"] for r in val} == {r["id"] for r in val2}
    assert not {r["document_id"] for r in train} & {r["document_id"] for r in val}
    keys = [str(i) for i in range(50)]
    assert hash_order(keys, "a") == hash_order(keys, "a") != hash_order(keys, "b")
