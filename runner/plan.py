"""A manifest expanded into jobs, each named by what it computes.

``job_id`` = the first 12 hex digits of sha256(canonical_json(identity)), where identity is

    {"strategy", "model" (hub id or path as written, never a machine's absolute path),
     "tasks", "seed", "config" (every resolved hyperparameter except checkpoint_every_s,
     compile and keep_weights, which change when state is saved, how fast and what is kept,
     not what is computed), "parity",
     "reference_job" (token_controlled: the multi-task job's id), "data_checksums"}

Never the experiment name, its position or a counter: re-ordering or extending a
manifest, or renaming an experiment, never renames a finished job.  The data checksums
are the lines of ``<data_dir>/SHA256SUMS`` for the job's tasks ({} where the file is
absent, e.g. before ``python -m runner prepare``).

Adapter jobs (RQ2) carry ``config.adapter``; a single_task experiment with ``adapter_match``
gets, per model and task, the LoRA rank whose trainable parameters (LoRA + the task's head)
are closest to the matched multi-task job's (shared LoRA + all its heads), computed here from
the encoder's config (``runner.adapters.match_rank``), and records it as
``config.adapter.matched_to`` (so the matched multi-task job id is part of the identity).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import InputError
from runner.fsutil import canonical_json
from runner.manifest import Manifest
from runner.models_registry import model_key, resolve_model

# Saved-state cadence (seconds), torch.compile and whether the best weights are kept: how often,
# how fast and what is kept, not what is computed, so not part of a job's identity.
NOT_IN_ID = ("checkpoint_every_s", "compile", "keep_weights")


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
    """Each job its own config (nested: max_train_examples, adapter, heldout)."""
    return copy.deepcopy(cfg)


# Offline shapes of the built-in hub models (all BERT-base: 12 layers, hidden 768, FFN 3072).
# LoRA on Linear layers and the heads do not depend on the vocabulary, so these give the same
# parameter counts as the hub configs; used only when AutoConfig cannot load them locally.
BERT_BASE_SHAPE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                   "intermediate_size": 3072}
OFFLINE_SHAPES = {"bert-base-uncased": BERT_BASE_SHAPE, "dmis-lab/biobert-v1.1": BERT_BASE_SHAPE,
                  "allenai/scibert_scivocab_uncased": BERT_BASE_SHAPE,
                  "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract": BERT_BASE_SHAPE}


def encoder_config(model_name: str, key: str, file: str, where: str):
    """The encoder's transformers config, from a local folder or the local hub cache only
    (planning never downloads); the built-in BERT-base models fall back to their known shape;
    anything else that cannot be loaded is an InputError naming the model."""
    from transformers import AutoConfig, BertConfig

    try:
        return AutoConfig.from_pretrained(model_name, local_files_only=True)
    except (OSError, ValueError) as exc:
        if key in OFFLINE_SHAPES:
            return BertConfig(**OFFLINE_SHAPES[key])
        raise InputError(file, f"adapter_match needs the config of model {key!r} "
                         f"({model_name}) at plan time, and it cannot be loaded offline "
                         f"({str(exc).splitlines()[0][:120]}); download it first or use a "
                         f"local path", where=where) from None


def head_parameters(task: str, hidden: int) -> int:
    """Parameters of a task's head (runner.engine.model): ner: Linear(hidden, n);
    others: Linear(hidden, hidden) + Linear(hidden, n); n = 1 for regression."""
    from runner.tasks import get_task

    spec = get_task(task)
    n = 1 if spec.kind == "regression" else len(spec.labels)
    out = hidden * n + n
    return out if spec.kind == "ner" else out + hidden * hidden + hidden


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
    # adapter_match experiments need the matched multi-task job ids too.
    ordered = sorted(manifest.experiments, key=lambda e: e.strategy == "token_controlled"
                     or e.adapter_match is not None)
    matches: dict[tuple, Any] = {}

    def matched_adapter(exp, alias, task, seed) -> dict[str, Any]:
        """exp's adapter with r matched to the multi-task job of this model and seed."""
        from runner.adapters import lora_trainable, match_rank

        ref_exp = manifest.experiment(exp.adapter_match)
        (ref_set,) = ref_exp.task_sets
        ref = mt_ids[(ref_exp.name, seed, alias, ref_set)]
        where = f"experiments.{exp.name}.adapter_match"
        key = (exp.name, alias, task)
        if key not in matches:
            settings = ref_exp.adapter
            conf = encoder_config(resolve_model(alias, manifest.models),
                                  model_key(alias, manifest.models), manifest.path, where)
            hidden = int(conf.hidden_size)
            target = lora_trainable(conf, settings.target_modules, settings.r,
                                    sum(head_parameters(t, hidden) for t in ref_set))
            try:
                m = match_rank(target, conf, settings.target_modules,
                               head_parameters(task, hidden))
            except InputError as err:
                raise InputError(manifest.path, err.message, where=where) from None
            matches[key] = (settings, m)
        settings, m = matches[key]
        out = settings.to_dict()
        # alpha / r (the update's scale) stays the matched experiment's
        out["r"], out["alpha"] = m.r, settings.alpha * m.r / settings.r
        out["matched_to"] = {"experiment": ref_exp.name, "job_id": ref.job_id,
                             "target_trainable": m.target_trainable, "trainable": m.trainable,
                             "relative_gap": m.relative_gap}
        return out
    for exp in ordered:
        out: list[Job] = by_exp.setdefault(exp.name, [])
        for seed in manifest.study.seeds:
            for alias in exp.models:
                key_name, model_name = model(alias)   # (canonical JSON of the key, path)
                for task_set in exp.task_sets:
                    if exp.strategy != "token_controlled":
                        cfg, cfg_json, tasks_json = config(exp, task_set)
                        if exp.adapter_match is not None:
                            cfg = {**cfg, "adapter": matched_adapter(exp, alias, task_set[0],
                                                                     seed)}
                            cfg_json = canonical_json({k: v for k, v in cfg.items()
                                                       if k not in NOT_IN_ID})
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
