"""Task similarity for RQ4, from the prepared training data alone.

Four measures per pair of tasks, each symmetric (``task_similarity.json``, see
results/README.md for the file):

* ``label_jaccard``: Jaccard |A ∩ B| / |A ∪ B| over *normalised* label names (lowercase;
  ``B-``/``I-``/``E-``/``S-`` prefixes stripped; runs of ``-``, ``_``, ``:``, ``/``, ``.``
  and spaces become one ``_``; the "nothing here" labels ``o``, ``none``, ``false``,
  ``negative``, ``null``, ``0`` and labels such as ``DDI-false`` whose parts include one of
  them are dropped).  The prepared NER data tag words B/I/O with one *untyped* entity, so an
  NER task's label set is the entity type(s) its corpus annotates (its TaskSpec's ``entity_types``,
  "entity" for a task that names none).  Regression tasks have no labels; Jaccard of two empty sets
  is undefined and written as null.
* ``word_jaccard``: Jaccard over lowercased word types; words are the maximal runs of Unicode
  word characters (regex ``\\w+``) in every text column (NER: the words joined by spaces).
* ``wordpiece_jaccard``: Jaccard over the word-piece ids the model's fast tokenizer gives the
  same texts (no special tokens); absent when no tokenizer is given.
* ``unigram_jsd``: Jensen–Shannon divergence, base 2 so it lies in [0, 1], of the two unigram
  word distributions P, Q (relative frequencies of the words above):
  ``JSD = H(M) - (H(P) + H(Q)) / 2`` with ``M = (P + Q) / 2`` and H in bits.  0 = identical
  distributions, 1 = disjoint vocabularies.  A divergence, not a similarity: lower is closer.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mtl_contract.files import atomic_write_json, sha256_file
from mtl_contract.schema import EXIT_BAD_INPUT, EXIT_OK
from mtl_contract.schema import SIMILARITY_SCHEMA as SCHEMA
from runner.errors import InputError

MEASURES = ("label_jaccard", "word_jaccard", "wordpiece_jaccard", "unigram_jsd")
WORD_RE = re.compile(r"\w+")
_SEPARATORS = re.compile(r"[-_:/.\s]+")
_PREFIX = re.compile(r"^[bies][-_]")
# Labels that mean "no entity / no relation / not this class": not part of a label schema.
NEGATIVE_LABELS = frozenset({"o", "none", "false", "negative", "null", "0"})
# Text columns of the prepared parquet files, in contract order (runner/tasks TaskSpec).
TEXT_COLUMNS = ("tokens", "text", "question", "context", "text_1", "text_2")


def entity_types(task: str) -> tuple[str, ...]:
    """What a B/I/O corpus tags (its TaskSpec's ``entity_types``); "entity" for a task that
    names none or is not in the registry."""
    from runner.data.tasks import TASKS

    spec = TASKS.get(task)
    return (spec.entity_types if spec is not None else ()) or ("entity",)


def normalise_label(name: str) -> str | None:
    """One label name -> its normal form, or None for a "nothing here" label (see module doc)."""
    s = str(name).strip().lower()
    s = _PREFIX.sub("", s)
    s = _SEPARATORS.sub("_", s).strip("_")
    if not s or s in NEGATIVE_LABELS or NEGATIVE_LABELS.intersection(s.split("_")):
        return None
    return s


def label_set(task: str, df) -> frozenset[str]:
    """Normalised label schema of a task from its training frame (columns per the contract)."""
    if "tags" in df.columns:
        names: set[str] = set()
        for tags in df["tags"]:
            for t in tags:
                n = normalise_label(t)
                if n is not None:
                    names.add(n)
        # Bare B/I (untyped) -> the corpus's entity types; typed tags (B-Gene) keep their type.
        typed = names - {"b", "i", "e", "s"}
        if typed:
            return frozenset(typed)
        if not names:
            return frozenset()
        return frozenset(entity_types(task))
    if "labels" in df.columns:
        out = {normalise_label(lab) for labs in df["labels"] for lab in labs}
        return frozenset(x for x in out if x is not None)
    if "label" in df.columns:
        col = df["label"]
        if col.dtype.kind == "f":  # regression score: no label schema
            return frozenset()
        out = {normalise_label(lab) for lab in col.unique()}
        return frozenset(x for x in out if x is not None)
    raise ValueError("no label column (tags, labels or label)")


def texts(df) -> list[str]:
    """Every text of the frame, one string per cell of each text column (NER words joined)."""
    out: list[str] = []
    for col in TEXT_COLUMNS:
        if col not in df.columns:
            continue
        if col == "tokens":
            out.extend(" ".join(map(str, toks)) for toks in df[col])
        else:
            out.extend("" if v is None else str(v) for v in df[col])
    if not out:
        raise ValueError(f"no text column (one of {', '.join(TEXT_COLUMNS)})")
    return out


def word_counts(text_list: Iterable[str]) -> Counter:
    """Lowercased ``\\w+`` word counts."""
    c: Counter = Counter()
    for t in text_list:
        c.update(WORD_RE.findall(t.lower()))
    return c


def jaccard(a: Iterable, b: Iterable) -> float | None:
    """|A ∩ B| / |A ∪ B|; None when both sets are empty (undefined)."""
    a, b = set(a), set(b)
    union = len(a | b)
    return None if union == 0 else len(a & b) / union


def jensen_shannon(p: Counter, q: Counter) -> float | None:
    """JSD in bits of two count distributions (normalised here); None when one is empty."""
    np_, nq = sum(p.values()), sum(q.values())
    if np_ == 0 or nq == 0:
        return None
    # JSD = 1/2 sum_x P log2(P/M) + 1/2 sum_x Q log2(Q/M), only over each side's support.
    total = 0.0
    for x, cp in p.items():
        pp = cp / np_
        qq = q.get(x, 0) / nq
        total += 0.5 * pp * math.log2(2 * pp / (pp + qq))
    for x, cq in q.items():
        qq = cq / nq
        pp = p.get(x, 0) / np_
        total += 0.5 * qq * math.log2(2 * qq / (pp + qq))
    return min(1.0, max(0.0, total))  # clamp float round-off into [0, 1]


@dataclass
class TaskProfile:
    """What the measures need from one task's training split."""
    task: str
    labels: frozenset[str]
    words: Counter
    wordpieces: frozenset[int] | None
    n_examples: int


def load_tokenizer(path: str | Path):
    """A fast ``tokenizers.Tokenizer`` from a model folder (its tokenizer.json) or the file."""
    from tokenizers import Tokenizer

    p = Path(path)
    f = p / "tokenizer.json" if p.is_dir() else p
    if not f.is_file():
        raise InputError(str(f), "no tokenizer.json (a fast tokenizer is needed)")
    try:
        tok = Tokenizer.from_file(str(f))
    except Exception as exc:  # tokenizers raises plain Exception subclasses
        raise InputError(str(f), f"cannot load tokenizer: {exc}") from exc
    # A saved tokenizer may pad batches (adds [PAD] ids) or truncate (drops pieces of long
    # texts); the vocabulary measure wants every piece of every text and nothing else.
    tok.no_padding()
    tok.no_truncation()
    return tok


def wordpiece_types(tokenizer, text_list: Sequence[str], batch: int = 1024) -> frozenset[int]:
    """Set of word-piece ids the tokenizer produces on the texts (no special tokens)."""
    ids: set[int] = set()
    text_list = list(text_list)
    for i in range(0, len(text_list), batch):
        for enc in tokenizer.encode_batch(text_list[i:i + batch], add_special_tokens=False):
            ids.update(enc.ids)
    return frozenset(ids)


def profile(task: str, df, tokenizer=None) -> TaskProfile:
    t = texts(df)
    return TaskProfile(task=task, labels=label_set(task, df), words=word_counts(t),
                       wordpieces=None if tokenizer is None else wordpiece_types(tokenizer, t),
                       n_examples=len(df))


def similarity_matrices(profiles: Sequence[TaskProfile]) -> dict[str, list[list[float | None]]]:
    """Symmetric matrices (tasks in ``profiles`` order) of every measure; None = undefined."""
    n = len(profiles)
    out: dict[str, list[list[float | None]]] = {}
    have_wp = all(p.wordpieces is not None for p in profiles)
    for m in MEASURES:
        if m == "wordpiece_jaccard" and not have_wp:
            continue
        mat: list[list[float | None]] = [[None] * n for _ in range(n)]
        for i in range(n):
            for j in range(i, n):
                a, b = profiles[i], profiles[j]
                if m == "label_jaccard":
                    v = jaccard(a.labels, b.labels)
                elif m == "word_jaccard":
                    v = jaccard(a.words, b.words)
                elif m == "wordpiece_jaccard":
                    v = jaccard(a.wordpieces, b.wordpieces)
                else:
                    v = 0.0 if i == j else jensen_shannon(a.words, b.words)
                mat[i][j] = mat[j][i] = v
        out[m] = mat
    return out


def _read_train(data_dir: Path, task: str, split: str):
    import pandas as pd

    f = data_dir / task / f"{split}.parquet"
    if not f.is_file():
        raise InputError(str(f), "missing prepared split (run the prepare command first)")
    try:
        return pd.read_parquet(f)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(str(f), f"cannot read parquet: {exc}") from exc


def compute(tasks: Sequence[str], data_dir: str | Path, tokenizer_path: str | Path | None = None,
            split: str = "train") -> dict:
    """The ``task_similarity.json`` document for ``tasks`` from ``data_dir/<task>/<split>.parquet``."""
    data_dir = Path(data_dir)
    if len(set(tasks)) != len(tasks) or not tasks:
        raise InputError(None, f"tasks must be distinct and non-empty, got {list(tasks)}",
                         where="--tasks")
    tok = None if tokenizer_path is None else load_tokenizer(tokenizer_path)
    profiles, checksums = [], {}
    for task in tasks:
        df = _read_train(data_dir, task, split)
        try:
            profiles.append(profile(task, df, tok))
        except ValueError as exc:
            raise InputError(str(data_dir / task / f"{split}.parquet"), str(exc)) from exc
        checksums[f"{task}/{split}.parquet"] = sha256_file(data_dir / task / f"{split}.parquet")
    return document(profiles, split=split, tokenizer_path=tokenizer_path,
                    data_checksums=checksums)


def document(profiles: Sequence[TaskProfile], *, split: str = "train",
             tokenizer_path: str | Path | None = None,
             data_checksums: dict[str, str] | None = None) -> dict:
    """Assemble the JSON document from task profiles (see RQ schema)."""
    tokenizer = None
    if tokenizer_path is not None:
        p = Path(tokenizer_path)
        f = p / "tokenizer.json" if p.is_dir() else p
        tokenizer = {"path": str(tokenizer_path),
                     "sha256": hashlib.sha256(f.read_bytes()).hexdigest()[:12]}
    return {
        "schema": SCHEMA,
        "tasks": [p.task for p in profiles],
        "split": split,
        "tokenizer": tokenizer,
        "word_regex": WORD_RE.pattern,
        "measures": similarity_matrices(profiles),
        "direction": {"label_jaccard": "similarity", "word_jaccard": "similarity",
                      "wordpiece_jaccard": "similarity", "unigram_jsd": "divergence"},
        "per_task": {p.task: {"labels": sorted(p.labels), "n_examples": p.n_examples,
                              "n_word_types": len(p.words),
                              "n_word_tokens": int(sum(p.words.values())),
                              "n_wordpiece_types": (None if p.wordpieces is None
                                                    else len(p.wordpieces))}
                     for p in profiles},
        "data_checksums": dict(data_checksums or {}),
    }


def write(doc: dict, out: str | Path) -> None:
    atomic_write_json(out, doc)


def write_for_manifest(manifest, results_dir, data_dir, out=None, tokenizer=None,
                       split: str = "train") -> int:
    """:func:`write_tasks` for the manifest's tasks, into ``out`` (default
    ``<results_dir>/task_similarity.json``).

    Without ``tokenizer``, the word-piece measure uses the manifest's model tokenizer when the
    manifest has one model and it is a local folder with a ``tokenizer.json`` (minilm);
    otherwise it prints a note and computes the word-level measures only."""
    from runner.study.manifest import manifest_tasks

    out = Path(out) if out is not None else Path(results_dir) / "task_similarity.json"
    tasks = manifest_tasks(manifest)
    if tokenizer is None:
        tokenizer, note = _manifest_tokenizer(manifest)
        if note:
            print(f"note: {note}")
    return write_tasks(tasks, data_dir, out, tokenizer, split)


def _manifest_tokenizer(manifest) -> tuple[str | None, str | None]:
    """The manifest's one local model folder with a tokenizer.json, or None and why not."""
    from runner.study.models import resolve_model

    models = sorted({m for e in manifest.experiments for m in e.models})
    paths = [resolve_model(m, manifest.models) for m in models]
    if len(paths) == 1 and (Path(paths[0]) / "tokenizer.json").is_file():
        return paths[0], None
    if len(paths) != 1:
        return None, (f"{len(paths)} models ({', '.join(models)}): word-level measures only "
                      f"(run with --tokenizer MODEL_DIR for one model's word pieces)")
    return None, (f"{models[0]} is not a local model folder ({paths[0]}): word-level measures "
                  f"only (run with --tokenizer MODEL_DIR for word pieces)")


def write_tasks(tasks: Sequence[str], data_dir, out, tokenizer=None,
                split: str = "train") -> int:
    """Compute and write the document for ``tasks``, print what was written; the exit code
    (bad input: one line on stderr, 2)."""
    try:
        doc = compute(tasks, data_dir, tokenizer, split)
        write(doc, out)
    except InputError as err:
        print(str(err), file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {out} ({len(doc['tasks'])} tasks, measures: {', '.join(doc['measures'])})")
    return EXIT_OK
