"""Readers for the three raw formats (and the optional hub path), each checking what it reads.

Every problem is an InputError naming the file and the line (TSV) or row (Arrow, pickle), so
``prepare`` can print one line and exit 2 before anything is written.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path

import pyarrow as pa
from pyarrow import ipc

from runner.errors import InputError

NER_TAGS = ("O", "B", "I")
# BigBIO / BLURB NER Arrow files store tags as ints in this order (O, B, I).
NER_TAG_IDS = {0: "O", 1: "B", 2: "I"}

# The columns each BigBIO schema must have (others are ignored): checked before any row is read.
BIGBIO_COLUMNS = {
    "ner": ("id", "tokens", "ner_tags"),
    "kb": ("document_id", "passages", "entities", "relations"),
    "text": ("id", "document_id", "text", "labels"),
    "pairs": ("id", "text_1", "text_2", "label"),
    "pubmedqa": ("pubid", "question", "context", "final_decision"),
}


# --- biobert-ner CoNLL TSV -------------------------------------------------------------------

def read_conll_tsv(path: str | Path) -> list[dict]:
    """``token<TAB>tag`` per line, blank line between sentences -> [{id, tokens, tags}].

    ``id`` is the sentence's 0-based position in the file, zero-padded ("00042"), so it is
    stable across runs and jobs. Tags must be B, I or O.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "file missing")
    rows: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if tokens:
            rows.append({"id": f"{len(rows):05d}", "tokens": list(tokens), "tags": list(tags)})
            tokens.clear()
            tags.clear()

    with open(path, encoding="utf-8", newline="") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                flush()
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise InputError(str(path), f"expected 'token<TAB>tag', got {len(parts)} "
                                 f"column(s): {line[:40]!r}", line=lineno)
            token, tag = parts
            if tag not in NER_TAGS:
                raise InputError(str(path), f"unknown tag {tag!r}; expected B, I or O",
                                 line=lineno)
            if not token.strip():
                raise InputError(str(path), "empty token", line=lineno)
            tokens.append(token)
            tags.append(tag)
    flush()
    if not rows:
        raise InputError(str(path), "empty split: no sentences")
    return rows


# --- BigBIO Arrow streams -------------------------------------------------------------------

def read_arrow_stream(path: str | Path) -> pa.Table:
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "file missing")
    try:
        with pa.memory_map(str(path)) as source:
            return ipc.open_stream(source).read_all()
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(str(path), f"not an Arrow IPC stream ({str(err).splitlines()[0]})") \
            from None


def check_table(table: pa.Table, schema: str, where: str) -> list[dict]:
    """Columns of the BigBIO ``schema`` present and at least one row -> rows as dicts."""
    missing = [c for c in BIGBIO_COLUMNS[schema] if c not in table.column_names]
    if missing:
        raise InputError(where, f"wrong schema for BigBIO {schema!r}: missing column "
                         f"{missing[0]!r} (has {', '.join(table.column_names)})")
    if table.num_rows == 0:
        raise InputError(where, "empty split: no rows")
    return table.select(list(BIGBIO_COLUMNS[schema]) + [
        c for c in table.column_names if c not in BIGBIO_COLUMNS[schema]]).to_pylist()


def ner_rows_from_bigbio(rows: list[dict], where: str) -> list[dict]:
    """BLURB-style NER rows {id, tokens, ner_tags: ints} -> {id, tokens, tags: B/I/O}."""
    out = []
    for i, r in enumerate(rows):
        tokens, ids = r["tokens"] or [], r["ner_tags"] or []
        if len(tokens) != len(ids):
            raise InputError(where, f"{len(tokens)} tokens but {len(ids)} tags", where=f"row {i}")
        try:
            tags = [NER_TAG_IDS[t] for t in ids]
        except KeyError as err:
            raise InputError(where, f"unknown tag id {err.args[0]!r}; expected 0 (O), 1 (B), "
                             "2 (I)", where=f"row {i}") from None
        out.append({"id": f"{i:05d}", "tokens": list(tokens), "tags": tags})
    return out


# --- the original study's pickles, read without running any of their code -------------------

# Opcodes that import or call something; a data-only pickle (dicts, lists, str, numbers) has none.
_UNSAFE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "REDUCE",
                   "BUILD", "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"}
_SAFE_TYPES = (dict, list, tuple, str, bytes, int, float, bool, type(None))


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only builtin containers and scalars: any import is refused before it happens."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refused import of {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused persistent id")


def read_seed_pickle(path: str | Path) -> dict:
    """``{split: [record, ...]}`` from one of the original study's pickle files.

    Two locks: the opcode stream is scanned first and any opcode that imports or calls is
    refused (so nothing is even constructed), then the restricted unpickler loads it, and the
    result is checked to be builtin data all the way down.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "file missing")
    data = path.read_bytes()
    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(data)):
            if op.name in _UNSAFE_OPCODES:
                detail = f" {arg}" if arg is not None else ""
                raise InputError(str(path), f"refused: the pickle imports or calls code "
                                 f"({op.name}{detail}); only builtin containers and scalars "
                                 "are admitted", where=f"byte {pos}")
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 -- any failure of a truncated/corrupt stream
        raise InputError(str(path), f"not a readable pickle ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from None
    _check_builtin(obj, str(path))
    if not isinstance(obj, dict):
        raise InputError(str(path), f"expected {{split: [records]}}, got {type(obj).__name__}")
    return obj


# Limits of the data check, counted as the data would be walked as a tree (a shared reference
# counts every time it appears, as the code below it would meet it). The original study's
# largest pickle (hoc.pkl) has 337,071 nodes and is 6 levels deep.
MAX_PICKLE_NODES = 20_000_000
MAX_PICKLE_DEPTH = 100
_END = object()


def _children(x) -> list:
    if isinstance(x, dict):
        return [*x.keys(), *x.values()]
    return list(x) if isinstance(x, (list, tuple)) else []


def _check_builtin(obj, where: str) -> int:
    """Refuse anything but builtin data, a reference cycle, or data that would expand beyond
    MAX_PICKLE_NODES nodes / MAX_PICKLE_DEPTH levels; return the node count.

    A pickle's memo lets a few bytes describe a cycle (``l.append(l)``) or 2**60 references to
    shared lists, so the walk keeps each container's expanded size by id (visited once) and
    the containers on the current path (met again = a cycle): linear in the file's size.
    """
    sizes: dict[int, int] = {}    # id(container) -> nodes below it, counted as a tree
    open_ids: set[int] = set()    # containers on the current path
    stack: list[tuple[int, object, int]] = []   # (id, iterator over children, count at entry)
    count, x = 0, obj
    while True:
        if not isinstance(x, _SAFE_TYPES) or type(x) not in _SAFE_TYPES:
            raise InputError(where, f"refused: contains a {type(x).__name__}")
        key = id(x)
        if key in open_ids:
            raise InputError(where, "refused: the data contains itself (a reference cycle)")
        if key in sizes:
            count += sizes[key]
        elif isinstance(x, (dict, list, tuple)):
            if len(stack) >= MAX_PICKLE_DEPTH:
                raise InputError(where, f"refused: nested deeper than {MAX_PICKLE_DEPTH} levels")
            open_ids.add(key)
            stack.append((key, iter(_children(x)), count))
            count += 1
        else:
            count += 1
        if count > MAX_PICKLE_NODES:
            raise InputError(where, f"refused: more than {MAX_PICKLE_NODES:,} values (shared "
                             "references counted each time they appear)")
        while stack:
            key, children, start = stack[-1]
            x = next(children, _END)
            if x is not _END:
                break
            stack.pop()
            open_ids.discard(key)
            sizes[key] = count - start
        else:
            return count


def seed_records(obj: dict, split: str, where: str) -> list[dict]:
    recs = obj.get(split)
    if not isinstance(recs, list):
        raise InputError(where, f"split {split!r} missing (has {', '.join(map(str, obj))})")
    if not recs:
        raise InputError(where, "empty split: no records", where=f"split {split}")
    for i, r in enumerate(recs):
        if not isinstance(r, dict):
            raise InputError(where, f"record is a {type(r).__name__}, expected a dict",
                             where=f"split {split} row {i}")
    return recs


# --- the Hugging Face hub (optional `datasets` library) -------------------------------------

def load_hf(hf_path: str, hf_name: str) -> dict[str, pa.Table]:
    """``datasets.load_dataset(hf_path, hf_name)`` -> {split: pyarrow Table}. Needs network."""
    try:
        import datasets  # optional dependency, only for --source hf
    except ImportError:
        raise InputError(None, "--source hf needs the optional `datasets` library "
                         "(pip install datasets) and network access") from None
    where = f"hf:{hf_path}/{hf_name}"
    try:
        dd = datasets.load_dataset(hf_path, hf_name)
    except Exception as err:  # noqa: BLE001 -- network, hub or config errors of any type
        raise InputError(where, f"load_dataset failed ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from None
    return {str(split): _as_arrow(ds, f"{where}[{split}]") for split, ds in dict(dd).items()}


def _as_arrow(ds, where: str) -> pa.Table:
    if isinstance(ds, pa.Table):
        return ds
    table = getattr(ds, "data", None)             # datasets.Dataset.data: datasets.table.Table
    table = getattr(table, "table", table)        # ... wrapping a pyarrow.Table
    if isinstance(table, pa.Table):
        return table
    raise InputError(where, f"cannot read a {type(ds).__name__} as an Arrow table")
