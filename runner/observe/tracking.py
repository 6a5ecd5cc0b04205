"""Experiment tracking: one run per job in TensorBoard, MLflow and/or Weights & Biases.

    tracker = open_tracker(["tensorboard", "mlflow"], results_dir, job_id, tags, config,
                           logger, resume_step=restored_optimizer_step)
    tracker.log_scalars(step, {"train/loss": 0.41, "train/lr": 2e-5, "train/tokens/bc2gm": 81920})
    tracker.log_final({"test/bc2gm/f1": 0.83})
    tracker.close("finished")          # | "failed" | "interrupted"

Where the runs go (``results_dir`` is the study's results folder):

* tensorboard: ``<results_dir>/tracking/tensorboard/<job_id>/`` event files, written with
  TensorBoard's own event writer (no torch, no TensorFlow) -- ``tensorboard --logdir
  <results_dir>/tracking/tensorboard`` shows one run per job;
* mlflow: ``$MLFLOW_TRACKING_URI`` when set, else a local file store
  ``<results_dir>/tracking/mlruns`` (MLflow >= 3.7 refuses file stores unless
  ``MLFLOW_ALLOW_FILE_STORE=true``: set here for that default store only); experiment = the
  study, run name = job id, tag ``runner.job_id`` = job id;
* wandb: project = the study (``$WANDB_PROJECT`` overrides), run id derived from the job id,
  ``resume="allow"``, files under ``<results_dir>/tracking/wandb/``; mode ``$WANDB_MODE``, else
  online when an API key is configured (``WANDB_API_KEY`` or a netrc login), else offline
  (``wandb sync <results_dir>/tracking/wandb/wandb/offline-run-*`` uploads later).

Resume.  ``resume_step`` is the optimizer step the job's checkpoint restored (None or 0: it
starts afresh -- yet a run of that job may exist from an attempt killed before its first
checkpoint).  A killed attempt may have logged steps after that checkpoint; the resumed
attempt logs them again.  Each backend ends up with one point per step:

* tensorboard writes a ``SessionLog.START`` event at ``resume_step + 1`` (what torch's
  ``SummaryWriter(purge_step=...)`` does): TensorBoard's reader discards the killed attempt's
  points at steps >= it, so the resumed attempt's values are shown;
* mlflow, local file store: the killed attempt's points after ``resume_step`` are removed from
  the run's metric files (no writer is alive then), so again the resumed values are kept; any
  other store (MLflow has no API to delete a metric point): steps up to the last one the run
  already has are skipped -- the killed attempt's values stay;
* wandb: W&B's step only grows (the server drops steps below a resumed run's last one); the
  tracker skips steps up to the last one the run has (online: the resumed run's ``step``;
  offline: the last step in the job's earlier offline run files) -- the killed attempt's
  values stay for those steps.

Failure policy: tracking never fails a job.  A backend that is not installed, or raises
anywhere (opening, logging, closing), costs one warning for that job and is dropped; the
other backends and the job go on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import struct
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

KNOWN_BACKENDS = ("tensorboard", "mlflow", "wandb")
EXTRA = "mtl-transfer-runner"  # pip install "mtl-transfer-runner[tensorboard]" etc.
_PIP_NAME = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny", "wandb": "wandb"}


def validate_backends(names: Iterable[str]) -> list[str]:
    """The names, de-duplicated in order; ValueError naming the unknown ones (for the
    manifest's ``[study] tracking`` and ``--tracking``)."""
    out: list[str] = []
    for raw in names:
        name = str(raw).strip().lower()
        if name not in KNOWN_BACKENDS:
            import difflib
            close = difflib.get_close_matches(name, KNOWN_BACKENDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown tracking backend {raw!r}{hint}; "
                             f"known: {', '.join(KNOWN_BACKENDS)}")
        if name not in out:
            out.append(name)
    return out


def parse_tracking_flag(text: str | None) -> list[str]:
    """``--tracking tensorboard,wandb`` -> ["tensorboard", "wandb"]; "" or "none" -> []."""
    if not text or text.strip().lower() == "none":
        return []
    return validate_backends(p for p in text.split(",") if p.strip())


def flatten(data: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """Nested mappings -> one level with ``sep``-joined keys."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


def _scalars(data: Mapping[str, Any]) -> dict[str, float]:
    """Finite numbers only (bools, None, strings, NaN and inf are left out)."""
    out = {}
    for key, value in flatten(data).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                import numpy as np  # numpy scalars
                if not isinstance(value, np.number):
                    continue
            except ImportError:
                continue
        value = float(value)
        if math.isfinite(value):
            out[key] = value
    return out


# ------------------------------------------------------------------------------ the fan-out
class Tracker:
    """Fans each call out to the backends still alive; never raises."""

    def __init__(self, backends: list, job_id: str, logger: logging.Logger):
        self._backends = list(backends)
        self.job_id = job_id
        self.logger = logger
        self.last_step = 0

    @property
    def active(self) -> list[str]:
        return [b.name for b in self._backends]

    def __bool__(self) -> bool:
        return bool(self._backends)

    def _each(self, what: str, call) -> None:
        for backend in list(self._backends):
            try:
                call(backend)
            except Exception as exc:  # noqa: BLE001 -- tracking never fails a job
                self._drop(backend, f"{what} failed: {_one_line(exc)}")

    def _drop(self, backend, why: str) -> None:
        self._backends.remove(backend)
        self.logger.warning("tracking: %s off for job %s (%s); the job goes on",
                            backend.name, self.job_id, why)
        try:
            backend.close("failed", quiet=True)
        except Exception:  # noqa: BLE001, S110 -- already dropped; nothing more to say
            pass

    def log_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        """Scalars at optimizer step ``step`` (nested dicts are flattened with "/")."""
        step = int(step)
        values = _scalars(scalars)
        if not values:
            return
        self.last_step = max(self.last_step, step)
        self._each("logging", lambda b: b.log(step, values) if step > b.floor else None)

    def log_final(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """The final (test) metrics: at the last step logged (TensorBoard, MLflow) and in
        the run's summary (W&B)."""
        values = _scalars(metrics)
        if values:
            at = int(step) if step is not None else self.last_step
            self._each("final metrics", lambda b: b.final(at, values))

    def flush(self) -> None:
        self._each("flush", lambda b: b.flush())

    def close(self, status: str = "finished") -> None:
        """status: finished | failed | interrupted."""
        self._each("closing", lambda b: b.close(status))
        self._backends = []

    def __enter__(self) -> Tracker:  # noqa: PYI034
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("finished" if exc_type is None else "failed")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"


def open_tracker(backends: Iterable[str], results_dir: str | Path, job_id: str,
                 tags: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None,
                 logger: logging.Logger | None = None, resume_step: int | None = None
                 ) -> Tracker:
    """A tracker for one job; each backend that cannot open is one warning and left out.

    ``tags``: model, tasks, strategy, experiment, seed, study (any str-able values; "study"
    names the MLflow experiment and the W&B project).  ``config``: the job's resolved config
    (nested dicts flattened with "." for MLflow params)."""
    logger = logger or logging.getLogger("runner")
    tags = {k: v for k, v in dict(tags or {}).items() if v is not None}
    config = dict(config or {})
    root = Path(results_dir) / "tracking"
    resume = int(resume_step or 0)
    opened = []
    for name in validate_backends(backends or []):
        cls = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _WandB}[name]
        try:
            opened.append(cls(root, job_id, tags, config, resume))
        except ImportError as exc:
            logger.warning("tracking: %s is not installed (%s; pip install \"%s[%s]\" or "
                           "pip install %s); job %s is not tracked there", name,
                           _one_line(exc), EXTRA, name, _PIP_NAME[name], job_id)
        except Exception as exc:  # noqa: BLE001
            logger.warning("tracking: %s could not start for job %s (%s); the job goes on",
                           name, job_id, _one_line(exc))
    return Tracker(opened, job_id, logger)


# ----------------------------------------------------------------------------- TensorBoard
def flush_seconds() -> float:
    """Seconds between the TensorBoard and W&B writers' flushes to disk (what a kill -9 can
    lose): ``$RUNNER_TRACKING_FLUSH_S``, default 10."""
    try:
        return max(0.1, float(os.environ.get("RUNNER_TRACKING_FLUSH_S", "10")))
    except ValueError:
        return 10.0


class _TensorBoard:
    name = "tensorboard"

    def __init__(self, root: Path, job_id: str, tags: dict, config: dict, resume: int):
        from tensorboard.compat.proto import event_pb2  # ImportError when not installed
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.event_pb2 = event_pb2
        self.logdir = root / "tensorboard" / job_id
        fresh = not (self.logdir.exists() and any(self.logdir.glob("events.out.tfevents.*")))
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.writer = EventFileWriter(str(self.logdir), flush_secs=flush_seconds())
        self.floor = resume
        if not fresh:
            # the reader drops every earlier point at step >= resume + 1
            self.writer.add_event(event_pb2.Event(
                wall_time=time.time(), step=resume + 1,
                session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
        else:
            self._text("tags", json.dumps(tags, sort_keys=True, default=str))
            self._text("config", json.dumps(config, sort_keys=True, indent=1, default=str))
        self.writer.flush()

    def _text(self, tag: str, text: str) -> None:
        from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
        meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text"))
        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, string_val=[f"<pre>{text}</pre>".encode()],
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]))
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
            tag=tag, metadata=meta, tensor=tensor)])
        self.writer.add_event(self.event_pb2.Event(wall_time=time.time(), step=0,
                                                   summary=summary))

    def log(self, step: int, values: dict[str, float]) -> None:
        from tensorboard.compat.proto import summary_pb2
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=k, simple_value=v)
                                             for k, v in values.items()])
        self.writer.add_event(self.event_pb2.Event(wall_time=time.time(), step=step,
                                                   summary=summary))

    def final(self, step: int, values: dict[str, float]) -> None:
        self.log(step, values)
        self.writer.flush()

    def flush(self) -> None:
        self.writer.flush()

    def close(self, status: str, quiet: bool = False) -> None:
        self.writer.close()


# ---------------------------------------------------------------------------------- MLflow
_MLFLOW_STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
_JOB_TAG = "runner.job_id"


def _file_store_root(uri: str) -> Path | None:
    """The folder of a local file-store URI, or None for any other store."""
    from urllib.parse import unquote, urlparse
    if "://" not in uri and not uri.startswith("file:"):
        return Path(uri)
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


class _MLflow:
    name = "mlflow"

    def __init__(self, root: Path, job_id: str, tags: dict, config: dict, resume: int):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or (root / "mlruns").resolve().as_uri()
        self.store_root = _file_store_root(uri)
        if self.store_root is not None:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            self.store_root.mkdir(parents=True, exist_ok=True)
        self.client = client = MlflowClient(tracking_uri=uri)
        study = str(tags.get("study") or "runner")
        exp = client.get_experiment_by_name(study)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(study)
        run_tags = {k: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
                    for k, v in tags.items()}
        run_tags[_JOB_TAG] = job_id
        found = client.search_runs([exp_id], filter_string=f"tags.`{_JOB_TAG}` = '{job_id}'",
                                   order_by=["attributes.start_time DESC"], max_results=1)
        self.floor = resume
        if found:
            run = found[0]
            self.run_id = run.info.run_id
            client.update_run(self.run_id, status="RUNNING")
            if self.store_root is not None:
                _truncate_file_store(self.store_root / exp_id / self.run_id / "metrics", resume)
            else:
                for key in run.data.metrics:
                    for m in client.get_metric_history(self.run_id, key):
                        self.floor = max(self.floor, int(m.step))
            have = run.data.params
        else:
            self.run_id = client.create_run(exp_id, run_name=job_id, tags=run_tags).info.run_id
            have = {}
        params = [Param(k, str(v)[:6000]) for k, v in
                  sorted(flatten(config, sep=".").items()) if k not in have]
        for i in range(0, len(params), 100):  # log_batch takes at most 100 params
            client.log_batch(self.run_id, params=params[i:i + 100])

    def log(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def final(self, step: int, values: dict[str, float]) -> None:
        self.log(step, values)

    def flush(self) -> None:
        pass  # every call is written through

    def close(self, status: str, quiet: bool = False) -> None:
        self.client.set_terminated(self.run_id, _MLFLOW_STATUS.get(status, "FINISHED"))


def _truncate_file_store(metrics_dir: Path, resume: int) -> None:
    """Drop the points after ``resume`` from a file-store run's metric files (lines
    ``timestamp value step [...]``); each file is replaced atomically."""
    if not metrics_dir.is_dir():
        return
    for path in metrics_dir.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        lines = path.read_text().splitlines(keepends=True)
        keep = [ln for ln in lines if len(ln.split()) >= 3 and int(ln.split()[2]) <= resume]
        if len(keep) != len(lines):
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text("".join(keep))
            os.replace(tmp, path)


# ------------------------------------------------------------------------- Weights & Biases
def wandb_run_id(job_id: str) -> str:
    """W&B run ids allow letters, digits, '-' and '_' (at most 64 characters)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", job_id)[:64]


def _wandb_mode() -> str:
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
        if "api.wandb.ai" in netrc.read_text():
            return "online"
    except OSError:
        pass
    return "offline"


class _WandB:
    name = "wandb"
    INIT_TIMEOUT_S = 60.0

    def __init__(self, root: Path, job_id: str, tags: dict, config: dict, resume: int):
        import wandb

        self.dir = root / "wandb"
        self.dir.mkdir(parents=True, exist_ok=True)
        run_id = wandb_run_id(job_id)
        mode = _wandb_mode()
        self.floor = resume
        if mode == "offline":
            for path in sorted(self.dir.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")):
                steps = [s for s, _ in read_wandb_history(path)]
                self.floor = max([self.floor, *steps])
        labels = [f"{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"[:64]
                  for k, v in tags.items()]
        settings = {"silent": True, "console": "off", "x_disable_stats": True,
                    "init_timeout": self.INIT_TIMEOUT_S,
                    "x_transaction_log_flush_interval": flush_seconds()}
        known = getattr(wandb.Settings, "model_fields", None)
        if known is not None:  # older releases lack some of these settings
            settings = {k: v for k, v in settings.items() if k in known}
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or str(tags.get("study") or "runner"),
            id=run_id, name=job_id, group=str(tags.get("experiment") or "") or None,
            job_type=str(tags.get("strategy") or "") or None, tags=labels,
            config={**config, "tags": tags}, dir=str(self.dir), mode=mode, resume="allow",
            reinit="create_new",
            settings=wandb.Settings(**settings))
        if self.run is None or getattr(self.run, "disabled", False):
            raise RuntimeError(f"wandb.init gave no run (mode {mode})")
        start = int(getattr(self.run, "step", 0) or 0)   # resumed online run: last step + 1
        if start:
            self.floor = max(self.floor, start - 1)

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def final(self, step: int, values: dict[str, float]) -> None:
        self.run.summary.update(values)

    def flush(self) -> None:
        # W&B holds the last step's row open until a later step is logged; commit it, so that
        # a job killed after this point has every step it logged in the run file
        self.run.log({}, commit=True)

    def close(self, status: str, quiet: bool = False) -> None:
        import wandb

        code = 0 if status == "finished" else 1
        self.run.finish(exit_code=code)
        # finish() can return before W&B's service has written the run's last records to
        # disk (offline: the .wandb file may still be only its header); teardown waits for
        # the service to finish and stops it.  A process runs one job at a time, so no other
        # run shares it; the next job's wandb.init starts a fresh service.
        wandb.teardown(exit_code=code)


_LOG_HEADER = 7        # ":W&B", magic 0xBEE1 (uint16), version (uint8)
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _wandb_records(path: str | Path):
    """The protobuf payloads of a ``.wandb`` file (a LevelDB-style log: 32 KiB blocks of
    records, each ``crc32 (uint32), length (uint16), type (uint8), data``).  A torn tail --
    a process killed mid-write -- ends the scan."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file")
    pos, pending = _LOG_HEADER, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:   # zero padding up to the block end
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        if len(chunk) < length:
            return
        pos += 7 + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""


def read_wandb_history(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(step, {key: value}) of each history row in one offline ``.wandb`` run file
    (keys starting with "_" -- W&B's own bookkeeping -- left out)."""
    from wandb.proto import wandb_internal_pb2 as pb

    rows = []
    for payload in _wandb_records(path):
        record = pb.Record()
        try:
            record.ParseFromString(payload)
        except Exception:  # noqa: BLE001, S112 -- a damaged record
            continue
        if record.WhichOneof("record_type") != "history":
            continue
        values = {}
        for item in record.history.item:
            key = item.key or "/".join(item.nested_key)
            if not key.startswith("_"):
                values[key] = json.loads(item.value_json)
        rows.append((int(record.history.step.num), values))
    return rows
