"""Read finished jobs: every ``result.json`` below the given folders, and their predictions.

This is the only place that sees raw JSON. A result that cannot be trusted (bad JSON, a
missing or mistyped field, a half-copied job) is listed with its path and the reason and
skipped; everything below works on the frozen :class:`JobResult` records and the tidy frame
built from them (one row per job and task). The layout is ``results/README.md``.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_contract.files import FileTooLarge, read_bounded, read_json_bounded, sha256_bytes
from mtl_contract.schema import (
    EXPERIMENT_TYPE,
    MAX_JSON_BYTES,
    MAX_PREDICTIONS_BYTES,
    PREDICTION_COLUMNS,
    RESULT_FILE,
    STAT_KINDS,
    STRATEGY_OF_TYPE,
    TC,
)
from stats.fileio import StatsInputError

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Skipped:
    """A file that was not used, and why (shown in SUMMARY.txt and statistics.json)."""

    path: str
    reason: str


@dataclass(frozen=True)
class TaskResult:
    task: str
    primary_metric: str
    metrics: dict[str, float]
    tokens: int | None  # real training tokens of this task in this job
    n_test: int | None
    stat_spec: dict[str, Any] | None
    predictions_path: Path | None
    # token-controlled jobs: the metrics of the best-validation weights beside
    # the final weights' ``metrics``; None when not recorded
    best_weights: dict[str, float] | None = None
    # the SHA256 result.json records of the predictions file (None: a result
    # written before digests; its predictions are read unverified), and the best-validation
    # weights' predictions with their digest
    predictions_sha256: str | None = None
    best_predictions_path: Path | None = None
    best_predictions_sha256: str | None = None


@dataclass(frozen=True)
class JobResult:
    job_id: str
    experiment_type: str
    strategy: str
    experiment: str
    study: str
    model: str
    model_name: str
    tokenizer: str | None
    seed: int
    tasks: tuple[str, ...]
    per_task: dict[str, TaskResult]
    token_count: int  # real (non-padding) training tokens, all tasks
    tokens_per_task: dict[str, int]
    config: dict[str, Any]
    dataset_stats: dict[str, dict[str, Any]]
    train_results: dict[str, Any]
    validation_history: list[dict[str, Any]]
    parity: dict[str, Any] | None
    path: Path
    # training tokens when the best-validation checkpoint was taken; None / {}
    # when not recorded (results written before these fields)
    tokens_at_best: int | None = None
    tokens_per_task_at_best: dict[str, int] = field(default_factory=dict)
    # provenance.data_checksums: SHA256 of every data file the job read (a
    # contamination file must describe the same data); {} when not recorded
    data_checksums: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NotRun:
    """A job the runner recorded as not run (result.json ``skipped``): a
    token-controlled job whose parity target was out of reach of its epoch cap.  Not missing
    data: its comparison is "not testable: parity unreachable"."""

    job_id: str
    experiment: str
    model: str
    seed: int
    task: str
    reference_job: str
    reason: str
    detail: str
    epochs_needed: float | None
    epoch_cap: int | None
    path: Path


@dataclass
class Loaded:
    jobs: list[JobResult] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    not_run: list[NotRun] = field(default_factory=list)
    # results that must not be published: one line each, FILE: what is wrong;
    # any makes ``python -m stats`` exit 2 with nothing written
    refused: list[str] = field(default_factory=list)


class RefusedResults(StatsInputError):
    """Results that would publish wrong numbers (a stored metric its predictions disagree
    with, a predictions file that is not the one its result recorded, a result in another
    job's folder, two results for one job, two configurations under one system name, a
    file that cannot be read); ``lines`` holds one line each, ``str()`` the first."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        more = f" (and {len(lines) - 1} more refused result(s), listed above)" \
            if len(lines) > 1 else ""
        super().__init__(None, self.lines[0] + more)


class _Bad(Exception):
    """A field of one result.json is missing or has the wrong type (message names the key)."""


class _Refused(Exception):
    """One result.json must not be used: it is in the wrong place or points
    outside its folder (message says which)."""


def _get(obj: dict, key: str, types: type | tuple[type, ...], where: str, optional=False):
    if key not in obj or obj[key] is None:
        if optional:
            return None
        raise _Bad(f"{where}{key}: missing")
    value = obj[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise _Bad(f"{where}{key}: expected {types}, got bool")
    if not isinstance(value, types):
        raise _Bad(f"{where}{key}: expected {getattr(types, '__name__', types)}, "
                   f"got {type(value).__name__}")
    return value


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Bad(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _numbers(raw: Any, kind: type = float) -> dict[str, Any]:
    """The finite numeric entries of an optional dict (tokens at the best
    validation, the best-weights metrics: tolerant, since a result written before they were
    recorded simply lacks them)."""
    if not isinstance(raw, dict):
        return {}
    return {str(k): kind(v) for k, v in raw.items() if isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(v) and (kind is float or v == int(v))}


def parse_result(data: Any, path: Path) -> JobResult:
    """Validate one parsed result.json; raise ``_Bad`` naming the first wrong key."""
    if not isinstance(data, dict):
        raise _Bad("top level: expected a JSON object")
    job_id = _get(data, "experiment_id", str, "")
    etype = _get(data, "experiment_type", str, "")
    if etype not in STRATEGY_OF_TYPE:
        raise _Bad(f"experiment_type: {etype!r} is not one of {sorted(STRATEGY_OF_TYPE)}")
    seed = _get(data, "seed", int, "")
    tasks = _get(data, "tasks", list, "")
    if not tasks or not all(isinstance(t, str) for t in tasks):
        raise _Bad("tasks: expected a non-empty list of task names")
    per_task_raw = _get(data, "per_task", dict, "")
    per_task: dict[str, TaskResult] = {}
    for task in tasks:
        if task not in per_task_raw or not isinstance(per_task_raw[task], dict):
            raise _Bad(f"per_task.{task}: missing (the job lists it in tasks)")
        per_task[task] = _task_result(task, per_task_raw[task], path)
    token_count = _get(data, "token_count", int, "")
    if token_count < 0:
        raise _Bad("token_count: negative")
    tokens_per_task = _get(data, "tokens_per_task", dict, "", optional=True) or {}
    tokens_per_task = {str(k): int(v) for k, v in tokens_per_task.items()
                       if isinstance(v, int) and not isinstance(v, bool)}
    parity = _get(data, "parity", dict, "", optional=True)
    if etype == EXPERIMENT_TYPE[TC]:
        if parity is None:
            raise _Bad("parity: missing (token-controlled jobs must name their reference_job)")
        _get(parity, "reference_job", str, "parity.")
    history = _get(data, "validation_history", list, "", optional=True) or []
    return JobResult(
        job_id=job_id, experiment_type=etype, strategy=STRATEGY_OF_TYPE[etype],
        experiment=_get(data, "experiment", str, "", optional=True) or etype,
        study=_get(data, "study", str, "", optional=True) or "",
        model=_get(data, "model", str, ""),
        model_name=_get(data, "model_name", str, "", optional=True) or "",
        tokenizer=_get(data, "tokenizer", str, "", optional=True),
        seed=seed, tasks=tuple(tasks), per_task=per_task, token_count=token_count,
        tokens_per_task=tokens_per_task,
        config=_get(data, "config", dict, "", optional=True) or {},
        dataset_stats=_get(data, "dataset_stats", dict, "", optional=True) or {},
        train_results=_get(data, "train_results", dict, "", optional=True) or {},
        validation_history=[h for h in history if isinstance(h, dict)],
        parity=parity, path=path,
        tokens_at_best=_get(data, "tokens_at_best", int, "", optional=True),
        tokens_per_task_at_best=_numbers(data.get("tokens_per_task_at_best"), int),
        data_checksums=_checksums(data.get("provenance")))


def parse_not_run(data: dict, path: Path) -> NotRun:
    """A result.json with a ``skipped`` block; ``_Bad`` names the wrong key."""
    block = _get(data, "skipped", dict, "")
    etype = _get(data, "experiment_type", str, "")
    if etype != EXPERIMENT_TYPE[TC]:
        raise _Bad(f"skipped: only token-controlled jobs are recorded as not run, not {etype!r}")
    tasks = _get(data, "tasks", list, "")
    if len(tasks) != 1 or not isinstance(tasks[0], str):
        raise _Bad("tasks: expected the one task of a token-controlled job")
    parity = _get(data, "parity", dict, "")
    needed, cap = block.get("epochs_needed"), block.get("epoch_cap")
    return NotRun(job_id=_get(data, "experiment_id", str, ""),
                  experiment=_get(data, "experiment", str, "", optional=True) or etype,
                  model=_get(data, "model", str, ""), seed=_get(data, "seed", int, ""),
                  task=tasks[0], reference_job=_get(parity, "reference_job", str, "parity."),
                  reason=_get(block, "reason", str, "skipped."),
                  detail=str(block.get("detail") or block["reason"]),
                  epochs_needed=float(needed) if isinstance(needed, (int, float)) else None,
                  epoch_cap=int(cap) if isinstance(cap, int) else None, path=path)


def _task_result(task: str, entry: dict, path: Path) -> TaskResult:
    """One ``per_task`` entry of a result.json; ``_Bad`` names the wrong key."""
    where = f"per_task.{task}."
    primary = _get(entry, "primary_metric", str, where)
    metrics_raw = _get(entry, "metrics", dict, where)
    if primary not in metrics_raw or metrics_raw[primary] is None:
        raise _Bad(f"{where}metrics: primary metric {primary!r} missing")
    _finite(metrics_raw[primary], f"{where}metrics.{primary}")
    # a secondary metric that is undefined (null / NaN, e.g. a loss never computed) is
    # left out rather than costing the whole job
    metrics = {str(k): float(v) for k, v in metrics_raw.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)
               and math.isfinite(v)}
    spec = _get(entry, "stat_spec", dict, where, optional=True)
    pred_rel = _get(entry, "predictions", str, where, optional=True)
    tokens = _get(entry, "tokens", int, where, optional=True)
    n_test = _get(entry, "n_test", int, where, optional=True)
    best_raw = entry.get("best_weights")
    best = _numbers(best_raw.get("metrics")) if isinstance(best_raw, dict) else None
    best_rel = best_raw.get("predictions") if isinstance(best_raw, dict) else None
    return TaskResult(
        task=task, primary_metric=primary, metrics=metrics, tokens=tokens, n_test=n_test,
        stat_spec=spec, predictions_path=_inside(path, pred_rel, f"{where}predictions"),
        best_weights=best if best and primary in best else None,
        predictions_sha256=_digest(entry, where),
        best_predictions_path=_inside(path, best_rel if isinstance(best_rel, str) else None,
                                      f"{where}best_weights.predictions"),
        best_predictions_sha256=_digest(best_raw, f"{where}best_weights.")
        if isinstance(best_raw, dict) else None)


def _inside(result_path: Path, rel: str | None, where: str) -> Path | None:
    """``rel`` (a result's predictions path) below the job's folder; ``_Refused`` when it
    is absolute or leaves the folder ("../", a symbolic link out of it)."""
    if rel is None:
        return None
    job_dir = result_path.parent
    target = job_dir / rel
    try:
        inside = not Path(rel).is_absolute() and os.path.realpath(target).startswith(
            os.path.realpath(job_dir) + os.sep)
    except (OSError, ValueError):
        inside = False
    if not inside:
        raise _Refused(f"{where}: {rel!r} resolves outside the job's folder")
    return target


def _digest(entry: dict, where: str) -> str | None:
    """``predictions_sha256`` (64 lower-case hex) or None when the result predates it."""
    value = entry.get("predictions_sha256")
    if value is None:
        return None
    if not isinstance(value, str) or not SHA256_RE.match(value):
        raise _Bad(f"{where}predictions_sha256: expected 64 hex digits, got {value!r}")
    return value


def _checksums(provenance: Any) -> dict[str, str]:
    """``provenance.data_checksums`` as {relative path: sha256}; tolerant (older results,
    synthetic ones) since only the contamination check reads it."""
    raw = provenance.get("data_checksums") if isinstance(provenance, dict) else None
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, str)}


def result_files(root: Path, problems: list[str] | None = None):
    """Every job's ``result.json`` below ``root``, lazily (a checkpoint's copy is not a job).

    Symbolic links are not followed (a results folder holds its own files): a
    linked folder or result.json, and a folder that cannot be read, are added to
    ``problems`` (one line each) when it is given, and never read."""
    def unreadable(err: OSError) -> None:
        if problems is not None:
            problems.append(f"{err.filename}: cannot read this folder "
                            f"({err.strerror or err}): its jobs would be left out")

    for parent, dirs, files in os.walk(root, onerror=unreadable):
        rel = Path(parent).relative_to(root).parts
        if "checkpoints" in rel:
            dirs[:] = []
            continue
        for name in sorted(dirs):
            if os.path.islink(os.path.join(parent, name)) and problems is not None:
                problems.append(f"{os.path.join(parent, name)}: a symbolic link (to "
                                f"{os.path.realpath(os.path.join(parent, name))}); a results "
                                "folder must hold its jobs' own folders, not links")
        if RESULT_FILE in files:
            path = Path(parent) / RESULT_FILE
            if path.is_symlink():
                if problems is not None:
                    problems.append(f"{path}: a symbolic link (to {os.path.realpath(path)}); "
                                    "a job's result.json must be its own file")
                continue
            yield path


def _read_result(path: Path) -> Any:
    """result.json parsed; ``_Refused`` when it cannot be read at all (permissions, not a
    regular file, larger than any result), ValueError when it is not JSON."""
    try:
        raw = read_bounded(path, MAX_JSON_BYTES)
    except FileTooLarge as err:
        raise _Refused(f"{err}: not a result.json") from None
    except OSError as err:
        raise _Refused(f"cannot read it ({err.strerror or err})") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def load_results(dirs: list[str | Path]) -> Loaded:
    """Every ``result.json`` below ``dirs``; malformed ones go to ``Loaded.skipped``, those
    that must not be used to ``Loaded.refused``: a result whose
    ``experiment_id`` is not its folder's name (a copied or misplaced job), two results
    for one job id, a symbolic link, a file or folder that cannot be read, predictions
    named outside the job's folder.

    Raises :class:`StatsInputError` only when a folder to scan does not exist.
    """
    loaded = Loaded()
    seen: dict[str, Path] = {}
    twice: set[str] = set()   # job ids with two results: neither is used
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            raise StatsInputError(root, "results folder does not exist (give --results DIR)")
        for path in sorted(result_files(root, loaded.refused)):
            try:
                data = _read_result(path)
                if isinstance(data, dict) and "skipped" in data:   # not run: parity out of reach
                    nr = parse_not_run(data, path)
                    if path.parent.name != nr.job_id:
                        loaded.refused.append(f"{path}: experiment_id {nr.job_id!r} is not "
                                              f"its folder's name {path.parent.name!r}")
                    else:
                        loaded.not_run.append(nr)
                    continue
                job = parse_result(data, path)
            except _Refused as err:
                loaded.refused.append(f"{path}: {err}")
                continue
            except (UnicodeDecodeError, ValueError) as err:
                loaded.skipped.append(Skipped(str(path), f"unreadable JSON: {err}"))
                continue
            except _Bad as err:
                loaded.skipped.append(Skipped(str(path), f"malformed result: {err}"))
                continue
            if path.parent.name != job.job_id:
                loaded.refused.append(
                    f"{path}: experiment_id {job.job_id!r} is not its folder's name "
                    f"{path.parent.name!r} (a copied or misplaced job folder)")
                continue
            if job.job_id in seen:
                if os.path.samefile(seen[job.job_id], path):
                    continue   # the same folder given twice (--results a --results a/b)
                loaded.refused.append(f"{path}: a second result for job {job.job_id} (the "
                                      f"first is {seen[job.job_id]}); keep one of them")
                twice.add(job.job_id)
                continue
            seen[job.job_id] = path
            loaded.jobs.append(job)
    loaded.jobs = [j for j in loaded.jobs if j.job_id not in twice]
    return loaded


class PredictionsUnavailable(Exception):
    """A task's predictions cannot be used (missing file, wrong columns); the message says
    why, without the path (callers know it)."""


def read_predictions(task_result: TaskResult, best_weights: bool = False
                     ) -> tuple[str, dict[str, Any], pd.DataFrame]:
    """Return ``(kind, stat_spec, frame)`` for one job's task, the frame indexed by unit_id
    (``best_weights``: the best-validation weights' predictions of a token-controlled job).

    Checks what the resampling needs: the file's SHA256 against the one result.json
    recorded (where it did), the stat_spec kind, its columns, no missing values, unique
    unit ids, and for ``classes`` ids inside ``labels``.
    """
    spec = task_result.stat_spec
    path, digest = ((task_result.best_predictions_path, task_result.best_predictions_sha256)
                    if best_weights else
                    (task_result.predictions_path, task_result.predictions_sha256))
    if spec is None or path is None:
        raise PredictionsUnavailable("result.json names no stat_spec/predictions for this task")
    kind = spec.get("kind")
    if kind not in STAT_KINDS:
        raise PredictionsUnavailable(f"stat_spec.kind {kind!r} is not one of {STAT_KINDS}")
    if not Path(path).is_file():
        raise PredictionsUnavailable("file missing")
    try:
        raw = read_bounded(path, MAX_PREDICTIONS_BYTES)
    except (OSError, FileTooLarge) as err:
        raise PredictionsUnavailable(f"cannot read it ({getattr(err, 'strerror', None) or err})"
                                     ) from None
    if digest is not None and sha256_bytes(raw) != digest:
        raise PredictionsUnavailable(
            f"its sha256 {sha256_bytes(raw)[:12]}... is not the {digest[:12]}... result.json "
            "recorded (truncated, replaced or edited since the job finished)")
    try:
        frame = pd.read_parquet(io.BytesIO(raw))
    except Exception as err:  # pyarrow raises many types for truncated files
        # the error's text repeats the path; the caller records the path beside the reason
        raise PredictionsUnavailable(
            f"cannot read parquet ({type(err).__name__}; truncated or not parquet)") from err
    need = ("unit_id",) + PREDICTION_COLUMNS[kind]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise PredictionsUnavailable(f"missing columns {missing} for kind {kind!r}")
    frame = frame.loc[:, list(need)]
    wrong = [c for c in PREDICTION_COLUMNS[kind] if not pd.api.types.is_numeric_dtype(frame[c])
             or pd.api.types.is_bool_dtype(frame[c])]
    if wrong:
        raise PredictionsUnavailable(f"columns {wrong} are not numeric")
    if frame.isna().any().any():
        raise PredictionsUnavailable(f"missing values in {list(need)}")
    frame["unit_id"] = frame["unit_id"].astype(str)
    if frame["unit_id"].duplicated().any():
        raise PredictionsUnavailable("unit_id is not unique")
    if kind == "classes":
        labels = spec.get("labels")
        scored = spec.get("scored")
        if not isinstance(labels, list) or not isinstance(scored, list) or not scored:
            raise PredictionsUnavailable("stat_spec needs 'labels' and 'scored' lists")
        ids = frame[["gold_id", "pred_id"]].to_numpy()
        if ids.size and (ids.min() < 0 or ids.max() >= len(labels)):
            raise PredictionsUnavailable("class id outside stat_spec.labels")
        if any(not isinstance(c, int) or not 0 <= c < len(labels) for c in scored):
            raise PredictionsUnavailable("stat_spec.scored outside labels")
    if kind == "counts" and (frame[list(PREDICTION_COLUMNS[kind])].to_numpy() < 0).any():
        raise PredictionsUnavailable("negative tp/fp/fn")
    if kind == "pairs" and not np.isfinite(frame[["gold_value", "pred_value"]].to_numpy(
            dtype=float)).all():
        raise PredictionsUnavailable("non-finite gold_value/pred_value")
    if len(frame) == 0:
        raise PredictionsUnavailable("no rows")
    return kind, spec, frame.set_index("unit_id")


TIDY_COLUMNS = [
    "job_id", "study", "experiment", "experiment_type", "strategy", "model", "model_name",
    "tokenizer", "seed", "task", "job_tasks", "primary_metric", "primary_value",
    "task_tokens", "token_count", "token_efficiency", "epochs_trained", "train_runtime_s",
    "steps", "examples_per_step", "warmup_steps", "n_test", "parity_mode", "parity_reference_job", "parity_relative_gap",
    "result_path",
]


def examples_per_step(train_results: dict) -> int | None:
    """Training examples per optimizer step: ``examples_per_step`` where the
    result records it (older results do not), else batch_size x
    grad_accumulation (which every result.json has recorded)."""
    if train_results.get("examples_per_step") is not None:
        return int(train_results["examples_per_step"])
    batch, accumulation = train_results.get("batch_size"), train_results.get("grad_accumulation")
    return None if batch is None else int(batch) * int(accumulation or 1)


def token_efficiency(value: float, tokens: int) -> float | None:
    """Primary metric per million training tokens (methodology 7.3); None for 0 tokens."""
    return None if tokens <= 0 else value / (tokens / 1_000_000)


def tidy(jobs: list[JobResult]) -> pd.DataFrame:
    """One row per job and task, ``metric_<name>`` columns for every metric (all_results.csv).

    ``token_count`` is the job's total training tokens (its data exposure);
    ``task_tokens`` the tokens of this task alone.
    """
    rows = []
    for job in jobs:
        for task in job.tasks:
            tr = job.per_task[task]
            value = tr.metrics[tr.primary_metric]
            parity = job.parity or {}
            row = {
                "job_id": job.job_id, "study": job.study, "experiment": job.experiment,
                "experiment_type": job.experiment_type, "strategy": job.strategy,
                "model": job.model, "model_name": job.model_name, "tokenizer": job.tokenizer,
                "seed": job.seed, "task": task, "job_tasks": "+".join(job.tasks),
                "primary_metric": tr.primary_metric, "primary_value": value,
                "task_tokens": tr.tokens if tr.tokens is not None
                else job.tokens_per_task.get(task),
                "token_count": job.token_count,
                "token_efficiency": token_efficiency(value, job.token_count),
                "epochs_trained": job.train_results.get("epochs_trained"),
                "train_runtime_s": job.train_results.get("train_runtime"),
                "steps": job.train_results.get("steps"),
                "examples_per_step": examples_per_step(job.train_results),
                "warmup_steps": job.train_results.get("warmup_steps"),
                "n_test": tr.n_test, "parity_mode": parity.get("mode"),
                "parity_reference_job": parity.get("reference_job"),
                "parity_relative_gap": parity.get("relative_gap"),
                "result_path": str(job.path),
            }
            for name, v in sorted(tr.metrics.items()):
                row[f"metric_{name}"] = v
            rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=TIDY_COLUMNS)
    metric_cols = sorted(c for c in frame.columns if c.startswith("metric_"))
    return frame[TIDY_COLUMNS + metric_cols].sort_values(
        ["model", "task", "strategy", "experiment", "seed"], kind="stable").reset_index(drop=True)


_RAW_CACHE: dict[str, dict] = {}


def raw_result(job: JobResult) -> dict:
    """The job's result.json as parsed JSON (fields the tidy record does not keep)."""
    key = str(job.path)
    if key not in _RAW_CACHE:
        try:
            _RAW_CACHE[key] = read_json_bounded(job.path)
        except (OSError, ValueError):
            _RAW_CACHE[key] = {}
    return _RAW_CACHE[key]


def trainable_params(job: JobResult, key: str = "trainable") -> int | None:
    """``model_params[key]`` of the job's result.json: "trainable" (heads included) or
    "encoder_trainable" (the encoder's alone; older results lack it); None if absent."""
    mp = raw_result(job).get("model_params")
    v = mp.get(key) if isinstance(mp, dict) else None
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def adapter_of(job: JobResult) -> dict | None:
    a = job.config.get("adapter") if isinstance(job.config, dict) else None
    return a if isinstance(a, dict) else None
