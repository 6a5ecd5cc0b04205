"""Reading the prepared, checksummed data a job trains and evaluates on.

``data/<task>/<split>.parquet`` (columns per task kind: runner/data/tasks/spec.py ``columns``) and
``data/SHA256SUMS`` (``sha256sum -c`` format, paths relative to data/).  Nothing here reads the
raw corpora: those are only for ``python -m runner prepare``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mtl_contract.files import sha256_file
from mtl_contract.schema import CHECKSUMS_FILE
from runner.data.checksums import job_checksums, read_checksums
from runner.data.tasks import SPLITS, get_task
from runner.errors import InputError

__all__ = ["CHECKSUMS_FILE", "file_sha256", "load_split", "read_checksums",
           "split_path", "verify_checksums"]

# (absolute path, size in bytes, mtime in ns) -> sha256: hashing 30 MB twice per process is waste.
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def split_path(data_dir: str | os.PathLike, task: str, split: str) -> Path:
    return Path(data_dir) / task / f"{split}.parquet"


def load_split(data_dir: str | os.PathLike, task: str, split: str) -> pd.DataFrame:
    """One prepared split as a DataFrame with exactly the task's columns, in file row order.

    Raises InputError for a missing file, a file that is not parquet, or wrong columns.
    KeyError for an unknown task (a programming error, not bad input).
    """
    spec = get_task(task)
    if split not in SPLITS:
        raise InputError(None, f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    path = split_path(data_dir, task, split)
    if not path.is_file():
        raise InputError(str(path), "prepared split missing; run `python -m runner prepare "
                         "--source DIR --out data/`")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as err:  # a damaged or foreign file
        raise InputError(str(path), f"not a readable parquet file ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if tuple(table.column_names) != spec.columns:
        raise InputError(str(path), f"columns {table.column_names} != expected "
                         f"{list(spec.columns)} for task {task}")
    # list columns as plain Python lists of str (what the engine and metrics take; to_pandas
    # would give numpy arrays), built straight from Arrow: about 2x faster than converting.
    lists = {"tokens", "tags", "labels"} & set(spec.columns)
    df = table.drop_columns(sorted(lists)).to_pandas()
    for col in spec.columns:
        if col in lists:
            df[col] = pd.Series(table.column(col).to_pylist(), dtype=object)
    return df[list(spec.columns)]


def file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = sha256_file(path)
    return _HASH_CACHE[key]


def verify_checksums(data_dir: str | os.PathLike, tasks) -> dict[str, str]:
    """Check every split file of ``tasks`` against ``SHA256SUMS``; return {relpath: sha256}.

    Only the given tasks' files are hashed. InputError naming the file when SHA256SUMS is
    missing or has no line for it, when the file is missing, or its content differs
    (modified or truncated).
    """
    data_dir = Path(data_dir)
    for task in tasks:
        get_task(task)
    listed = job_checksums(read_checksums(data_dir), tasks, data_dir)
    out: dict[str, str] = {}
    for rel, want in listed.items():
        path = data_dir / rel
        if not path.is_file():
            raise InputError(str(path), f"listed in {CHECKSUMS_FILE} but missing")
        got = file_sha256(path)
        if got != want:
            raise InputError(str(path), f"sha256 {got[:12]}... != {want[:12]}... in "
                             f"{CHECKSUMS_FILE}: the file was modified or truncated; prepare it "
                             f"again")
        out[rel] = got
    return out


SUBSAMPLE_SEED = 0  # the same subset for every job and seed, so predictions pair across jobs


def subsample(df: pd.DataFrame, n: int | None) -> pd.DataFrame:
    """At most ``n`` rows (``max_train_examples`` / ``max_eval_examples``), drawn with
    SUBSAMPLE_SEED and kept in file order; None or a larger n: every row."""
    if n is None or len(df) <= int(n):
        return df.reset_index(drop=True)
    return df.sample(n=int(n), random_state=SUBSAMPLE_SEED).sort_index().reset_index(drop=True)


def _stratum(kind: str, df: pd.DataFrame) -> pd.Series:
    """What a validation subset keeps in proportion, per row: the label (classification),
    the sorted label set (multi-label), the score's quartile (regression), the number of
    entities, 0, 1, 2 or 3+ (NER: the rows without an entity are most of a corpus and score
    nothing, so a uniform draw could change the F1's weighting)."""
    if kind == "ner":
        starts = df["tags"].map(lambda tags: sum(str(t).startswith("B") for t in tags))
        return starts.clip(upper=3).astype(str)
    if kind == "multilabel":
        return df["labels"].map(lambda labels: "|".join(sorted(map(str, labels))))
    if kind == "regression":
        values = df["label"].astype(float)
        return pd.Series(pd.qcut(values.rank(method="first"), 4, labels=False), index=df.index,
                         dtype="object").astype(str) if len(df) >= 4 else values.astype(str)
    return df["label"].astype(str)


def validation_subset_positions(kind: str, df: pd.DataFrame, n: int | None,
                                seed: int = SUBSAMPLE_SEED) -> list[int]:
    """Positions (in file order) of the rows of ``max_validation_examples``: a stratified
    draw of ``n`` rows (strata: :func:`_stratum`), each stratum's share by largest
    remainder, its rows drawn with SUBSAMPLE_SEED -- the same subset for every job, model
    and seed, so that model selection is not one more random factor.  Every row when n is
    None or not below the split's size.  ``seed``: another draw (benchmarks only: a job
    always uses SUBSAMPLE_SEED)."""
    if n is None or len(df) <= int(n):
        return list(range(len(df)))
    n = int(n)
    strata = _stratum(kind, df.reset_index(drop=True))
    sizes = strata.value_counts().sort_index()
    exact = sizes * n / len(df)
    take = exact.astype(int)
    left = n - int(take.sum())
    # largest remainders first; ties by stratum name, so the subset depends on the data only
    order = sorted(sizes.index, key=lambda s: (-(exact[s] - take[s]), s))
    for s in order[:left]:
        take[s] += 1
    chosen: list[int] = []
    for s in sizes.index:
        rows = strata.index[strata == s]
        picked = pd.Series(rows).sample(n=int(take[s]), random_state=seed)
        chosen.extend(int(i) for i in picked)
    return sorted(chosen)


def validation_subset(kind: str, df: pd.DataFrame, n: int | None) -> pd.DataFrame:
    """The rows :func:`validation_subset_positions` chooses, in file order."""
    return df.reset_index(drop=True).iloc[validation_subset_positions(kind, df, n)] \
        .reset_index(drop=True)
