"""A manifest expanded into jobs, each named by what it computes.

``job_id`` = the first 12 hex digits of sha256(canonical_json(identity)), where identity is

    {"strategy", "model" (hub id or path as written, never a machine's absolute path),
     "tasks", "seed", "config" (every resolved hyperparameter except checkpoint_every_s,
     which changes when state is saved, not what is computed), "parity",
     "reference_job" (token_controlled: the multi-task job's id), "data_checksums"}

Never the experiment name, its position or a counter: re-ordering or extending a
manifest, or renaming an experiment, never renames a finished job.  The data checksums
are the lines of ``<data_dir>/SHA256SUMS`` for the job's tasks ({} where the file is
absent, e.g. before ``python -m runner prepare``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import InputError
from runner.fsutil import canonical_json
from runner.manifest import Manifest
from runner.models_registry import model_key, resolve_model

# Saved-state cadence (seconds): how often, not what, so not part of a job's identity.
NOT_IN_ID = ("checkpoint_every_s",)


@dataclass(frozen=True)
class Job:
    job_id: str
    study: str
    experiment: str
    strategy: str          # single_task | multi_task | token_controlled
    experiment_type: str   # single_task_baseline | multi_task | token_controlled_baseline
    model: str             # manifest alias
    model_name: str        # hub id or local path the engine loads
    tasks: tuple[str, ...]
    seed: int
    config: dict[str, Any]
    depends_on: tuple[str, ...]
    parity: str | None
    data_checksums: dict[str, str]


@dataclass(frozen=True)
class Plan:
    manifest: Manifest
    data_dir: Path
    jobs: tuple[Job, ...]   # in run order

    def by_id(self) -> dict[str, Job]:
        return {j.job_id: j for j in self.jobs}


def read_checksums(data_dir: str | Path) -> dict[str, dict[str, str]]:
    """``SHA256SUMS`` grouped by task (the first folder of each path); {} when absent."""
    path = Path(data_dir) / "SHA256SUMS"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"cannot read checksums: {exc}") from None
    out: dict[str, dict[str, str]] = {}
    for no, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef"
                                                       for c in digest):
            raise InputError(str(path), "expected '<sha256>  <path>' (sha256sum format)",
                             line=no)
        rel = parts[1].strip().lstrip("*")
        out.setdefault(rel.split("/", 1)[0], {})[rel] = digest
    return out


def job_id_of(identity: dict[str, Any]) -> str:
    """The definition: 12 hex digits of sha256 over the identity's canonical JSON."""
    return hashlib.sha256(canonical_json(identity).encode("utf-8")).hexdigest()[:12]


def _fast_id(config: str, data_checksums: str, model: str, parity: str, reference_job: str,
             seed: int, strategy: str, tasks: str) -> str:
    """``job_id_of`` from the identity's values already in canonical JSON (cached per
    experiment and task set), so 10,000 jobs need no full JSON encoding each.  Equal to
    ``job_id_of`` by construction: canonical JSON is sorted keys with "," and ":"
    separators, and the parameters above are the identity's keys in sorted order."""
    text = (f'{{"config":{config},"data_checksums":{data_checksums},"model":{model},'
            f'"parity":{parity},"reference_job":{reference_job},"seed":{seed},'
            f'"strategy":{strategy},"tasks":{tasks}}}')
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _copy(cfg: dict[str, Any]) -> dict[str, Any]:
    """Each job its own config (the only nested value is max_train_examples)."""
    return {**cfg, "max_train_examples": dict(cfg["max_train_examples"])}


def build_plan(manifest: Manifest, data_dir: str | Path = "data") -> Plan:
    """Expand every experiment x seed x model x task set into jobs, in manifest order."""
    sums = read_checksums(data_dir)
    study = manifest.study.name
    jobs: list[Job] = []
    seen: dict[str, Job] = {}
    # multi-task job ids by (experiment, seed, model, task set), for token_controlled jobs
    mt_ids: dict[tuple, Job] = {}
    resolved: dict[str, tuple[str, str]] = {}
    configs: dict[tuple, tuple[dict, str, str]] = {}
    strategy_json = {s: canonical_json(s) for s in ("single_task", "multi_task",
                                                      "token_controlled")}

    def add(job: Job) -> None:
        if job.job_id in seen:
            other = seen[job.job_id]
            raise InputError(manifest.path, f"experiment {job.experiment!r} repeats job "
                             f"{job.job_id} of experiment {other.experiment!r} (same model, "
                             f"tasks, seed and hyperparameters): remove one",
                             where=f"experiments.{job.experiment}")
        seen[job.job_id] = job
        jobs.append(job)

    data_cache: dict[tuple, tuple[dict, str]] = {}

    def checksums(tasks: tuple[str, ...]) -> tuple[dict[str, str], str]:
        if tasks not in data_cache:
            out: dict[str, str] = {}
            for t in tasks:
                out.update(sums.get(t, {}))
            data_cache[tasks] = (out, canonical_json(out))
        data, text = data_cache[tasks]
        return dict(data), text

    def config(exp, tasks) -> tuple[dict, str]:
        """(resolved config, canonical JSON of its identity part, and of the tasks)."""
        key = (exp.name, tasks)
        if key not in configs:
            cfg = manifest.resolved_config(exp, tasks)
            hashed = {k: v for k, v in cfg.items() if k not in NOT_IN_ID}
            configs[key] = (cfg, canonical_json(hashed), canonical_json(list(tasks)))
        return configs[key]

    def model(alias):
        if alias not in resolved:
            key = model_key(alias, manifest.models)
            resolved[alias] = (canonical_json(key), resolve_model(alias, manifest.models))
        return resolved[alias]

    # token_controlled jobs need their reference's ids: build multi_task jobs first,
    # then emit everything in manifest order.
    by_exp: dict[str, list[Job]] = {}
    ordered = sorted(manifest.experiments, key=lambda e: e.strategy == "token_controlled")
    for exp in ordered:
        out: list[Job] = by_exp.setdefault(exp.name, [])
        for seed in manifest.study.seeds:
            for alias in exp.models:
                key_name, model_name = model(alias)   # (canonical JSON of the key, path)
                for task_set in exp.task_sets:
                    if exp.strategy != "token_controlled":
                        cfg, cfg_json, tasks_json = config(exp, task_set)
                        data, data_json = checksums(task_set)
                        job_id = _fast_id(config=cfg_json, data_checksums=data_json,
                                          model=key_name, parity="null", reference_job="null",
                                          seed=seed, strategy=strategy_json[exp.strategy],
                                          tasks=tasks_json)
                        job = Job(job_id=job_id, study=study, experiment=exp.name,
                                  strategy=exp.strategy, experiment_type=exp.experiment_type,
                                  model=alias, model_name=model_name, tasks=task_set,
                                  seed=seed, config=_copy(cfg), depends_on=(), parity=None,
                                  data_checksums=data)
                        if exp.strategy == "multi_task":
                            mt_ids[(exp.name, seed, alias, task_set)] = job
                        out.append(job)
                        continue
                    ref = mt_ids[(exp.reference, seed, alias, task_set)]
                    for task in task_set:
                        cfg, cfg_json, tasks_json = config(exp, (task,))
                        data, data_json = checksums((task,))
                        job_id = _fast_id(config=cfg_json, data_checksums=data_json,
                                          model=key_name, parity=canonical_json(exp.parity),
                                          reference_job=f'"{ref.job_id}"', seed=seed,
                                          strategy=strategy_json[exp.strategy],
                                          tasks=tasks_json)
                        out.append(Job(
                            job_id=job_id, study=study, experiment=exp.name,
                            strategy=exp.strategy, experiment_type=exp.experiment_type,
                            model=alias, model_name=model_name, tasks=(task,), seed=seed,
                            config=_copy(cfg), depends_on=(ref.job_id,), parity=exp.parity,
                            data_checksums=data))
    for exp in manifest.experiments:
        for job in by_exp[exp.name]:
            add(job)
    return Plan(manifest=manifest, data_dir=Path(data_dir), jobs=tuple(jobs))
