"""Train/test overlap between the prepared tasks: which evaluated units a training set contains.

``python -m runner contamination [--manifest M | --tasks a,b,...] [--data-dir data] [--n 13]
[--out data/CONTAMINATION.json]`` compares, for every ordered pair (training task A, evaluated
task B) including A = B, each validation and test *unit* of B with every training unit of A.

A **unit** is what the predictions file scores, named by its ``unit_id`` (runner/ml/metrics.py):
NER: a sentence (its words); RE (chemprot, ddi) and GAD: one candidate-pair example, i.e. the
sentence with its two entity mentions masked as BLURB masks them (``@GENE$`` ...); HoC: an
abstract (``document_id``), all its sentences; BIOSSES: the sentence pair; PubMedQA: question
and context.  Training units are defined the same way (HoC: whole training abstracts).

Normalisation: lower-case; a *word* is a maximal run of Unicode letters and digits (regex
``[^\\W_]+``); everything else separates words.  An entity mask counts as one placeholder word
(the same for every mask type).  A unit's *pieces* (HoC's sentences, BIOSSES' two sentences,
PubMedQA's question and context; one piece otherwise) are kept apart.

* **exact**: the unit's normalised word sequence (pieces, boundaries and mask positions
  included) equals a training unit's; units without any word match nothing.
* **ngram**: the unit shares a run of ``n`` consecutive words with a training unit, a run
  never crossing a piece boundary or an entity mask (the encoder never saw such a run in one
  place).  A unit without n such words (a short unit) therefore counts only by exact match.
  Exact duplicates with n words or more are in both lists.

Relation examples of one sentence share its text but mask different mentions: each example
is its own unit, compared with its own masks, so two examples of one sentence match by
n-gram on their unmasked runs, and exactly only when the same positions are masked.

Speed: words become stable 64-bit values (pandas' SipHash ``hash_array``), n-grams windowed
polynomial hashes over one flat numpy array, matched by ``searchsorted`` against the sorted
training hashes of all tasks at once (a bit per task).  Two different n-grams share a 64-bit
hash with probability ~2^-64 per pair (a collision could only add an overlap, never hide
one); ``naive_overlap`` (plain Python sets of word tuples)
is the definition the tests and ``benchmarks/contamination.py`` check the fast path against.

The file (schema ``contamination/1``, results/README.md) is keyed by ``unit_id`` so ``stats``
can join it with the predictions; its header records n, the rules and the SHA256 of every data
file it was computed from, and ``load_contamination`` refuses a stale one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtl_contract.schema import CONTAMINATION_SCHEMA as SCHEMA
from runner.errors import InputError

DEFAULT_N = 13
EVALUATED_SPLITS = ("validation", "test")
WORD_RE = re.compile(r"@[a-z][a-z-]*\$|[^\W_]+")   # applied to lower-cased text
MASK = "@"            # every entity mask (@GENE$, @CHEMICAL$, ...) becomes this one word
PIECE_END = "\x00"    # closes every piece: no word contains it (WORD_RE has no \x00)
UNIT_END = "\x01"     # closes every unit in ``tokenise``'s one string
_TOKEN_RE = re.compile(WORD_RE.pattern + r"|[\x00\x01]")
NORMALISATION = ("lower-case; words = maximal runs of Unicode letters and digits (Python "
                 "regex [^\\W_]+), everything else separates words; entity masks "
                 "(@GENE$, @CHEMICAL$, @DRUG$, @DISEASE$, @CHEM-GENE$) are one placeholder "
                 "word")
RULES = {
    "exact": "the unit's normalised word sequence (pieces, piece boundaries and mask "
             "positions included) equals a training unit's; a unit without words matches "
             "nothing",
    "ngram": "the unit shares a run of n consecutive words with a training unit; runs never "
             "cross a piece boundary or an entity mask",
    "short_units": "a unit without a run of n words counts only by exact match",
    "overlap": "a unit overlaps a training task when it is in its exact or its ngram list",
}
UNIT_TEXT = {
    "ner": "a sentence: its words (unit_id = row id)",
    "relation": "one candidate-pair example: the sentence with its two entity mentions "
                "masked (unit_id = row id); examples of one sentence are separate units",
    "multilabel": "an abstract: its sentences, in file order, each a piece (unit_id = "
                  "document_id); training abstracts alike",
    "regression": "a sentence pair: text_1 and text_2, two pieces (unit_id = row id)",
    "pair": "question and context, two pieces (unit_id = row id)",
}


def unit_text_kind(spec) -> str:
    """Which entry of UNIT_TEXT describes the task's units."""
    if spec.kind in ("ner", "multilabel", "regression"):
        return spec.kind
    return "pair" if len(spec.text_fields) == 2 else "relation"


# ------------------------------------------------------------------------------ units
def unit_column(spec) -> str:
    """The column that names a row's unit: HoC is scored per abstract (runner/ml/metrics.py)."""
    return "document_id" if spec.kind == "multilabel" else "id"


def read_split(data_dir: str | Path, spec, split: str) -> pa.Table:
    """The columns of one prepared split that units are made of (InputError naming the file
    when it is missing or unreadable)."""
    from runner.data.splits import split_path

    path = split_path(data_dir, spec.name, split)
    columns = [unit_column(spec)] + list(spec.text_fields)
    try:
        return pq.read_table(path, columns=columns)
    except FileNotFoundError:
        raise InputError(str(path), "prepared split missing; run `python -m runner prepare "
                         "--source DIR --out data/`") from None
    except (pa.ArrowException, OSError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(str(path), f"not a prepared {spec.name} split ({first})") from None


def units_of(spec, table: pa.Table) -> tuple[list[str], list[list[str]]]:
    """(unit ids, each unit's pieces of raw text) of one split, units in first-row order.
    ``table`` holds at least ``unit_column(spec)`` and ``spec.text_fields`` (a DataFrame of the
    split works too: it is converted)."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    ids = [str(i) for i in table.column(unit_column(spec)).to_pylist()]
    if spec.kind == "ner":   # the words, joined with spaces (Arrow: about 10x a Python join)
        return ids, [[t or ""] for t in pc.binary_join(table.column("tokens"), " ").to_pylist()]
    texts = [table.column(f).cast(pa.string()).to_pylist() for f in spec.text_fields]
    if spec.kind == "multilabel":
        pieces: dict[str, list[str]] = {}
        for doc, text in zip(ids, texts[0]):
            pieces.setdefault(doc, []).append(text or "")
        return list(pieces), list(pieces.values())
    return ids, [[t or "" for t in unit] for unit in zip(*texts)]


def words(text: str) -> list[str]:
    """The normalised words of one piece of text (entity masks -> MASK)."""
    return [MASK if w[0] == "@" else w for w in WORD_RE.findall(text.lower())]


def unit_key(pieces_words: list[list[str]]) -> tuple | None:
    """The definition of exact: the tuple of the pieces' words; None without any word."""
    if not any(w != MASK for piece in pieces_words for w in piece):
        return None
    return tuple(tuple(piece) for piece in pieces_words)


def unit_grams(pieces_words: list[list[str]], n: int) -> set[tuple[str, ...]]:
    """The definition of ngram: every run of n words inside a piece and between masks."""
    out: set[tuple[str, ...]] = set()
    for piece in pieces_words:
        run: list[str] = []
        for w in piece + [MASK]:
            if w == MASK:
                out.update(tuple(run[i:i + n]) for i in range(len(run) - n + 1))
                run = []
            else:
                run.append(w)
    return out


def naive_overlap(query: Sequence[Sequence[str]], reference: Iterable[Sequence[str]],
                  n: int) -> tuple[list[bool], list[bool]]:
    """The definition in plain Python: (exact, ngram) per query unit (units = lists of pieces)
    against a reference set of units, with sets of word tuples.  The tests' oracle for the
    fast path (benchmarks/contamination.py times the same sets as its baseline)."""
    ref_exact, ref_grams = set(), set()
    for unit in reference:
        tokenised = [words(p) for p in unit]
        ref_exact.add(unit_key(tokenised))
        ref_grams |= unit_grams(tokenised, n)
    ref_exact.discard(None)
    exact, ngram = [], []
    for unit in query:
        tokenised = [words(p) for p in unit]
        exact.append(unit_key(tokenised) in ref_exact)
        ngram.append(not unit_grams(tokenised, n).isdisjoint(ref_grams))
    return exact, ngram


# ---------------------------------------------------------------------------- hashing
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_PRIME = np.uint64(0x100000001B3)          # odd, so the polynomial is a bijection per step
_POSITION = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio increment of splitmix64
_MASK_VALUE = np.uint64(0x6D61736B)        # "mask": SipHash values of words are spread out


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit flips about half the output bits."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class Encoded:
    """One split's units as hashes: what matching needs, nothing else."""

    unit_ids: list[str]
    exact: np.ndarray        # uint64 per unit: hash of its whole word sequence
    has_words: np.ndarray    # bool per unit: units without words match nothing exactly
    grams: np.ndarray        # uint64 per n-gram (window inside a run)
    gram_unit: np.ndarray    # int64: the unit of each n-gram


def _split_words(text: str) -> list[str]:
    """``_TOKEN_RE.findall(text)``, ~1.5x faster: whitespace is never part of a token, so
    split there first (in C); a chunk that is all letters and digits is one word as it is."""
    out: list[str] = []
    add, extend, findall = out.append, out.extend, _TOKEN_RE.findall
    for chunk in text.split():
        if chunk.isalnum():   # str.isalnum() is exactly "every character matches [^\W_]"
            add(chunk)
        else:
            extend(findall(chunk))
    return out


def tokenise(pieces: list[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every unit's words, each piece closed by PIECE_END, all units in one sequence, as
    (codes into the distinct tokens, the distinct tokens, tokens per unit).  One regex pass
    over the whole split: ~2x faster than one per piece, and the same words (no word spans a
    piece: PIECE_END is no word)."""
    text = "".join("".join(p + PIECE_END for p in unit) + UNIT_END for unit in pieces)
    if text.count(UNIT_END) != len(pieces) or \
            text.count(PIECE_END) != sum(len(unit) for unit in pieces):
        # a separator character inside the data itself: it separates words there anyway
        clean = [[p.replace(PIECE_END, " ").replace(UNIT_END, " ") for p in u] for u in pieces]
        return tokenise(clean)
    tokens = np.asarray(_split_words(text.lower()), dtype=object)
    codes, uniques = pd.factorize(tokens, sort=False)
    uniques = np.asarray(uniques, dtype=object)
    # (not ``uniques == UNIT_END``: numpy drops trailing NULs etc. when it compares strings)
    end_code = [i for i, w in enumerate(uniques) if w == UNIT_END]
    is_end = codes == (end_code[0] if end_code else -1)
    ends = np.flatnonzero(is_end)
    lengths = np.diff(np.concatenate(([-1], ends))) - 1
    return codes[~is_end], uniques, lengths


def encode(unit_ids: list[str], pieces: list[list[str]], n: int) -> Encoded:
    """Hash every unit's word sequence and its n-grams (see the module docstring)."""
    if len(unit_ids) != len(pieces) or not all(pieces):
        raise ValueError(f"{len(unit_ids)} unit ids for {len(pieces)} units, each needs a piece")
    return encode_tokens(unit_ids, tokenise(pieces), n)


def encode_tokens(unit_ids: list[str], tokens: tuple, n: int) -> Encoded:
    """``encode`` from ``tokenise``'s result (the benchmark times the two apart)."""
    codes, uniques, lengths = tokens
    # SipHash with pandas' fixed key: the same word has the same value in every process
    values = pd.util.hash_array(uniques, categorize=False).astype(np.uint64)
    masks = np.array([w[0] == "@" for w in uniques], dtype=bool)
    values[masks] = _MASK_VALUE   # every mask type is one placeholder word
    special = masks | np.array([w in (PIECE_END, UNIT_END) for w in uniques], dtype=bool)
    word_value, barrier = values[codes], special[codes]
    unit_of = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    return Encoded(list(unit_ids), *_exact_hashes(word_value, unit_of, lengths, barrier),
                   *_gram_hashes(word_value, barrier, unit_of, n))


def _exact_hashes(value, unit_of, lengths, barrier) -> tuple[np.ndarray, np.ndarray]:
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(lengths) else lengths
    position = np.arange(len(value), dtype=np.int64) - starts[unit_of]
    # order-sensitive: each word is mixed with its position, then summed (mod 2^64) per unit
    contrib = _mix(value + (position.astype(np.uint64) + np.uint64(1)) * _POSITION)
    sums = np.add.reduceat(contrib, starts) if len(value) else np.zeros(0, np.uint64)
    exact = _mix(sums ^ (lengths.astype(np.uint64) * _M2))
    n_words = np.bincount(unit_of, weights=~barrier, minlength=len(lengths))
    return exact, n_words > 0


def _gram_hashes(value, barrier, unit_of, n) -> tuple[np.ndarray, np.ndarray]:
    windows = len(value) - n + 1
    if windows <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    h = np.zeros(windows, dtype=np.uint64)
    for k in range(n):   # n vectorised passes: h = h * P + v, wrapping mod 2^64
        h = h * _PRIME + value[k:k + windows]
    blocked = np.concatenate(([0], np.cumsum(barrier, dtype=np.int64)))
    inside = blocked[n:] - blocked[:windows] == 0   # no mask or piece end in the window
    return _mix(h[inside]), unit_of[:windows][inside]


# ---------------------------------------------------------------------------- matching
@dataclass(frozen=True)
class Index:
    """The training side of many tasks at once: sorted unique hashes, a bit per task."""

    exact: np.ndarray
    exact_bits: np.ndarray
    grams: np.ndarray
    gram_bits: np.ndarray
    size: int


def _unique_with_bits(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct hashes, for each the OR of the bits of the parts that hold it)."""
    hashes = np.concatenate([np.zeros(0, np.uint64), *parts])
    bits = np.concatenate([np.zeros(0, np.uint64)] + [
        np.full(len(p), np.uint64(1) << np.uint64(i), np.uint64) for i, p in enumerate(parts)])
    if not len(hashes):
        return hashes, bits
    order = np.argsort(hashes)   # equal hashes meet whatever their order: their bits are ORed
    hashes, bits = hashes[order], bits[order]
    first = np.flatnonzero(np.concatenate(([True], hashes[1:] != hashes[:-1])))
    return hashes[first], np.bitwise_or.reduceat(bits, first)


def build_index(references: Sequence[Encoded]) -> Index:
    """At most 64 references (one bit each in a uint64)."""
    if len(references) > 64:
        raise ValueError("build_index takes at most 64 references")
    exact, exact_bits = _unique_with_bits([r.exact[r.has_words] for r in references])
    grams, gram_bits = _unique_with_bits([r.grams for r in references])
    return Index(exact, exact_bits, grams, gram_bits, len(references))


def _bits_of(table: np.ndarray, bits: np.ndarray, query: np.ndarray) -> np.ndarray:
    if not len(table):
        return np.zeros(len(query), np.uint64)
    at = np.minimum(np.searchsorted(table, query), len(table) - 1)
    return np.where(table[at] == query, bits[at], np.uint64(0))


def lookup(index: Index, query: Encoded) -> tuple[np.ndarray, np.ndarray]:
    """(exact, ngram): bool arrays [reference, query unit]: the unit overlaps that reference."""
    units = len(query.unit_ids)
    exact_bits = np.where(query.has_words, _bits_of(index.exact, index.exact_bits, query.exact),
                          np.uint64(0))
    gram_bits = _bits_of(index.grams, index.gram_bits, query.grams)
    hit = gram_bits != 0
    hit_units, hit_bits = query.gram_unit[hit], gram_bits[hit]
    exact = np.zeros((index.size, units), dtype=bool)
    ngram = np.zeros((index.size, units), dtype=bool)
    for r in range(index.size):
        bit = np.uint64(1) << np.uint64(r)
        exact[r] = (exact_bits & bit) != 0
        ngram[r, hit_units[(hit_bits & bit) != 0]] = True
    return exact, ngram


def build_indexes(references: Sequence[Encoded]) -> list[Index]:
    """Any number of references, 64 to an index (build once, look up many queries)."""
    return [build_index(references[i:i + 64]) for i in range(0, len(references), 64)]


def lookup_all(indexes: Sequence[Index], query: Encoded) -> tuple[np.ndarray, np.ndarray]:
    """``lookup`` over ``build_indexes``' indexes: rows in the references' order."""
    parts = [lookup(index, query) for index in indexes]
    if not parts:
        empty = np.zeros((0, len(query.unit_ids)), dtype=bool)
        return empty, empty
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def match(query: Encoded, references: Sequence[Encoded]) -> tuple[np.ndarray, np.ndarray]:
    """(exact, ngram): bool arrays [reference, query unit]: the unit overlaps that reference."""
    return lookup_all(build_indexes(references), query)


# ---------------------------------------------------------------------------- the file
def encode_split(data_dir: str | Path, task: str, split: str, n: int) -> Encoded:
    from runner.data.tasks import get_task

    spec = get_task(task)
    return encode(*units_of(spec, read_split(data_dir, spec, split)), n)


def selected_ids(encoded: Encoded, selected: np.ndarray) -> list[str]:
    """The ids of the units where ``selected`` (a bool per unit) is true, sorted."""
    return sorted(encoded.unit_ids[i] for i in np.flatnonzero(selected))


def compute(data_dir: str | Path, tasks: Sequence[str], n: int = DEFAULT_N) -> dict:
    """The contamination document (schema contamination/1, results/README.md) of ``tasks``.
    Every data file is checked against SHA256SUMS first (InputError when one differs)."""
    from runner.data.splits import verify_checksums
    from runner.data.tasks import get_task

    if n < 1:
        raise InputError(None, f"expected n >= 1, got {n}", where="--n")
    tasks = list(dict.fromkeys(tasks))
    checksums = verify_checksums(data_dir, tasks)
    enc = {(t, s): encode_split(data_dir, t, s, n) for t in tasks
           for s in ("train",) + EVALUATED_SPLITS}
    train = build_indexes([enc[t, "train"] for t in tasks])
    overlap: dict[str, dict] = {}
    for b in tasks:
        overlap[b] = {}
        for split in EVALUATED_SPLITS:
            exact, ngram = lookup_all(train, enc[b, split])
            overlap[b][split] = {a: {"exact": selected_ids(enc[b, split], exact[i]),
                                     "ngram": selected_ids(enc[b, split], ngram[i])}
                                 for i, a in enumerate(tasks)}
    evaluated = build_indexes([enc[t, s] for t in tasks for s in EVALUATED_SPLITS])
    dropped = {}
    for a in tasks:
        exact, ngram = lookup_all(evaluated, enc[a, "train"])
        dropped[a] = int((exact | ngram).any(axis=0).sum())
    return {
        "schema": SCHEMA, "n": n, "normalisation": NORMALISATION, "rules": dict(RULES),
        "unit_text": {t: UNIT_TEXT[unit_text_kind(get_task(t))] for t in tasks},
        "tasks": tasks, "evaluated_splits": list(EVALUATED_SPLITS),
        "data_checksums": dict(sorted(checksums.items())),
        "units": {t: {s: len(enc[t, s].unit_ids) for s in ("train",) + EVALUATED_SPLITS}
                  for t in tasks},
        "overlap": overlap,
        "train_units_overlapping_evaluated": dropped,
    }


def document_bytes(doc: dict) -> bytes:
    """Deterministic: sorted keys, sorted id lists (compute), 1-space indent, final newline."""
    return (json.dumps(doc, indent=1, sort_keys=True, allow_nan=False, ensure_ascii=True)
            + "\n").encode("utf-8")


def load_contamination(path: str | Path, data_dir: str | Path) -> dict:
    """The document at ``path``, after checking it is current: its schema, and every data file
    it was computed from has the SHA256 its header records (and, where ``SHA256SUMS`` lists
    the file itself, the file has that SHA256).  InputError naming ``path`` otherwise."""
    from mtl_contract.schema import CHECKSUMS_FILE as CHECKSUMS
    from runner.data.checksums import read_checksums
    from runner.data.splits import file_sha256

    path, data_dir = Path(path), Path(data_dir)
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise InputError(str(path), "contamination file missing; run `python -m runner "
                         "contamination`") from None
    except (OSError, ValueError) as err:
        raise InputError(str(path), f"not a readable JSON file ({err})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise InputError(str(path), f"expected schema {SCHEMA!r}, got "
                         f"{doc.get('schema') if isinstance(doc, dict) else doc!r}")
    for rel, digest in sorted(doc.get("data_checksums", {}).items()):
        data_file = data_dir / rel
        got = file_sha256(data_file) if data_file.is_file() else None
        if got != digest:
            what = "is missing" if got is None else "has changed"
            raise InputError(str(path), f"stale: {data_file} {what} since it was computed; "
                             f"run `python -m runner contamination` again", where=rel)
    if (data_dir / CHECKSUMS).is_file() and path.resolve().parent == data_dir.resolve():
        listed = read_checksums(data_dir).get(path.name)
        if listed is not None and listed != file_sha256(path):
            raise InputError(str(path), f"sha256 differs from {data_dir / CHECKSUMS}: the "
                             f"file was edited; run `python -m runner contamination` again")
    return doc


def contaminated_units(doc: dict, task: str, split: str, train_tasks: Iterable[str]) -> set[str]:
    """Units of ``task``'s ``split`` that overlap (exact or n-gram) the training units of any
    of ``train_tasks``: what a clean-unit analysis leaves out."""
    pairs = doc["overlap"][task][split]
    out: set[str] = set()
    for a in train_tasks:
        if a not in pairs:
            raise KeyError(f"training task {a!r} not in the contamination file")
        out.update(pairs[a]["exact"], pairs[a]["ngram"])
    return out


# ------------------------------------------------------------------- decontamination
def overlapping_train_units(data_dir: str | Path, task: str, against: Sequence[str],
                            n: int = DEFAULT_N) -> set[str]:
    """Training units of ``task`` that overlap (exact or n-gram) a validation or test unit of
    any task in ``against``: what ``decontaminate = true`` drops (runner.data.splits)."""
    query = encode_split(data_dir, task, "train", n)
    exact, ngram = lookup_all(_evaluated_index(data_dir, tuple(against), n), query)
    return set(selected_ids(query, (exact | ngram).any(axis=0)))


def _evaluated_index(data_dir: str | Path, against: tuple[str, ...], n: int) -> list[Index]:
    """The evaluated units' index, built once per process for the same files: a worker runs
    many jobs of one study, each decontaminated against the same tasks (seconds each)."""
    from runner.data.splits import split_path

    stamp = []
    for t in against:
        for s in EVALUATED_SPLITS:
            path = split_path(data_dir, t, s)
            st = path.stat() if path.is_file() else None
            stamp.append((str(path.resolve()), st and st.st_size, st and st.st_mtime_ns))
    key = (tuple(stamp), n)
    if key not in _INDEX_CACHE:
        _INDEX_CACHE.clear()   # one study's index at a time: tens of MB
        _INDEX_CACHE[key] = build_indexes(
            [encode_split(data_dir, t, s, n) for t in against for s in EVALUATED_SPLITS])
    return _INDEX_CACHE[key]


_INDEX_CACHE: dict[tuple, list[Index]] = {}


def decontaminate_train(data_dir: str | Path, task: str, train: pd.DataFrame,
                        setting: dict | None) -> tuple[pd.DataFrame, int | None]:
    """``config.decontaminate`` (manifest ``decontaminate = true``): ``task``'s training split
    ``train`` without the units that overlap (exact or n-gram, runner.data.contamination) a
    validation or test unit of any task in ``setting["against"]``, and the number of rows
    dropped (HoC: every sentence of a dropped abstract).  No setting: ``train``, None.

    The evaluated files must still have the SHA256 the plan recorded in
    ``setting["data_checksums"]`` (InputError naming the file otherwise): what is dropped
    depends on them, and so does the job id."""
    if not setting:
        return train, None
    from runner.data.splits import file_sha256
    from runner.data.tasks import get_task

    for rel, digest in sorted(setting.get("data_checksums", {}).items()):
        path = Path(data_dir) / rel
        if not path.is_file() or file_sha256(path) != digest:
            raise InputError(str(path), "missing or changed since the plan was made; a "
                             "decontaminated job's training data depends on it: plan again")
    drop = overlapping_train_units(data_dir, task, setting["against"], int(setting["n"]))
    keep = ~train[unit_column(get_task(task))].astype(str).isin(drop)
    return train[keep].reset_index(drop=True), int((~keep).sum())
