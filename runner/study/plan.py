"""A manifest expanded into jobs, each named by what it computes.

``job_id`` = the first 12 hex digits of sha256(canonical_json(identity)), where identity is

    {"strategy", "model" (hub id or path as written, never a machine's absolute path),
     "tasks", "seed", "config" (every resolved hyperparameter except checkpoint_every_s,
     compile and keep_weights, which change when state is saved, how fast and what is kept,
     not what is computed), "parity",
     "reference_job" (token_controlled: the multi-task job's id), "data_checksums"}

Never the experiment name, its position or a counter: re-ordering or extending a
manifest, or renaming an experiment, never renames a finished job.  The data checksums
are the lines of ``<data_dir>/SHA256SUMS`` for every file of the job's tasks: a missing
folder, file or line is bad input (``{}`` only in a plan built without data, see
``build_plan``).

Adapter jobs (RQ2) carry ``config.adapter``; a single_task experiment with ``adapter_match``
gets, per model and task, the LoRA rank whose encoder-side trainable parameters (its LoRA: what
reaches the held-out evaluation, which throws the heads away) are closest to the matched
multi-task job's shared LoRA, computed here from the encoder's config
(``runner.study.lora_shapes.rank_for``), and records it as ``config.adapter.matched_to`` with both
counts, encoder side and with the heads (so the matched multi-task job id is part of the
identity).

Sequence lengths and token-controlled settings enter the config only where they change what
a job computes (runner.study.manifest.Manifest.resolved_config): ``max_length_per_task`` unless
every task is cut at a ``max_length`` within its former built-in cap, and
``token_controlled_max_epochs`` / ``parity_target`` in token-controlled jobs only.

Warm-up (runner.study.manifest.warmup_config): a job with neither ``warmup_steps`` nor
``warmup_ratio`` carries ``warmup_steps: 500, warmup_cap: 0.1`` (at most 10% of its planned
steps) unless its planned steps are known here and are 5,000 or more; then the cap cannot bind
and the config is ``warmup_steps: 500`` alone, the id such a job had before the cap.

A job of a ``decontaminate = true`` experiment carries ``config.decontaminate`` = {"n",
"against": the study's evaluated tasks, "data_checksums": the SHA256SUMS lines of their
validation and test files}: its training data depends on them, so its id does too.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyarrow import ArrowException
from pyarrow.parquet import read_metadata

from mtl_contract.files import canonical_json
from mtl_contract.schema import CHECKSUMS_FILE
from runner.data.checksums import data_folder, job_checksums, read_checksums
from runner.errors import InputError
from runner.study.config import TrainConfig
from runner.study.heads import head_parameters
from runner.study.lora_shapes import EncoderShape, rank_for
from runner.study.manifest import Manifest, TomlLines  # the parser's key path -> line map
from runner.study.models import (
    Loader,
    how_to_get,
    model_key,
    model_problem,
    resolve_model,
    whereabouts,
)
from runner.study.strategies import STRATEGIES

# Saved-state cadence (seconds), torch.compile and whether the best weights are kept: how often,
# how fast and what is kept, not what is computed, so not part of a job's identity.
NOT_IN_ID = ("checkpoint_every_s", "compile", "keep_weights", "unreachable_parity")


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

    @functools.cached_property
    def settings(self) -> TrainConfig:
        """``config`` as a frozen TrainConfig (absent keys at the manifest's defaults): what
        code below the plan reads; the dict stays what the job id hashes and result.json
        records."""
        return TrainConfig.from_dict(self.config)


@dataclass(frozen=True)
class Plan:
    manifest: Manifest
    data_dir: Path
    jobs: tuple[Job, ...]   # in run order

    def by_id(self) -> dict[str, Job]:
        return {j.job_id: j for j in self.jobs}


def plan_checksums(data_dir: str | Path, require_data: bool) -> dict[str, str] | None:
    """The data folder's SHA256SUMS (the one parser: runner.data.checksums), or None for a plan
    without data: ``require_data`` false and no SHA256SUMS there (see build_plan)."""
    if require_data:
        data_folder(data_dir)
    elif not (Path(data_dir) / CHECKSUMS_FILE).exists():
        return None
    return read_checksums(data_dir)


def evaluated_checksums(sums: dict[str, str] | None, tasks, data_dir) -> dict[str, str]:
    """SHA256SUMS lines of the validation and test files of ``tasks``: what a job with
    ``decontaminate`` drops from its training data depends on them ({} without data)."""
    if sums is None:
        return {}
    return {rel: digest for rel, digest in job_checksums(sums, tasks, data_dir).items()
            if not rel.endswith("/train.parquet")}


def pq_rows(path: Path) -> int:
    return int(read_metadata(path).num_rows)


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


def _copy(cfg: Any) -> Any:
    """Each job its own config (nested: max_train_examples, adapter, heldout).  A config is
    JSON-like (it is hashed as canonical JSON): dicts and lists are copied, the rest (str,
    numbers, bool, None) is immutable -- 10,000 jobs' configs in a fraction of deepcopy's
    time."""
    if type(cfg) is dict:
        return {k: _copy(v) for k, v in cfg.items()}
    if type(cfg) is list:
        return [_copy(v) for v in cfg]
    return cfg


def text_control_config(cfg: dict[str, Any], reference: Job) -> dict[str, Any]:
    """A text-matched control's config (control = "text"): its own (validation, checkpoints,
    parity target) with the multi-task job's training settings (TEXT_CONTROL_COPIED: batch,
    schedule, sampling, subsets, lengths, ...) and ``control.tasks``, that job's task set in
    its order: the job replays that job's batches, its own task's supervised, the others' as
    masked-LM text.  What it copies is part of its config, so of its id."""
    from runner.study.strategies import TEXT_CONTROL_COPIED

    out = {k: v for k, v in cfg.items() if k not in TEXT_CONTROL_COPIED}
    out.update({k: copy.deepcopy(reference.config[k]) for k in TEXT_CONTROL_COPIED
                if k in reference.config})
    out["control"] = {**cfg["control"], "tasks": list(reference.tasks)}
    return out


def planned_steps(cfg: TrainConfig, token_target: bool, tasks, rows,
                  decontaminate: bool = False) -> int | None:
    """A job's planned optimizer steps as the engine plans them (runner.ml.train
    plan_total_steps): max_steps, else ceil(epochs x sum of ceil(rows / batch) / accumulation)
    over its tasks' training rows (``rows(task)``, capped by max_train_examples); None where
    they are not known before it runs (a token target, decontamination, a missing split)."""
    if cfg.max_steps:
        return int(cfg.max_steps)
    if token_target or decontaminate:
        return None
    batch, caps, micro = int(cfg.batch_size), cfg.max_train_examples or {}, 0
    for task in tasks:
        n = rows(task)
        if n is None:
            return None
        n = min(n, int(caps[task])) if caps.get(task) else n
        micro += math.ceil(n / batch)
    return max(1, math.ceil(int(cfg.max_epochs) * micro / int(cfg.grad_accumulation)))


def build_plan(manifest: Manifest, data_dir: str | Path = "data", *,
               require_data: bool = False, encoder_shape: EncoderShape | None = None) -> Plan:
    """Expand every experiment x seed x model into jobs (each strategy's ``expand``,
    runner.study.strategies), in manifest order.

    Every job records the SHA256SUMS lines of every file it reads; a SHA256SUMS without one
    of them is an InputError.  ``require_data`` (``python -m runner run|plan|status``): the
    folder and its SHA256SUMS must exist too.  Without it, a folder with no SHA256SUMS gives
    a plan without data -- jobs with no checksums, so other ids -- for callers whose jobs
    read no data (stand-in job functions in tests, benchmarks).  ``encoder_shape``
    (runner.ml.lora.encoder_lora_shape, handed over by the CLI and the recipes) is what an
    ``adapter_match`` experiment's rank matching needs; a manifest with one and no
    ``encoder_shape`` is an InputError.
    """
    builder = _Builder(manifest, Path(data_dir), plan_checksums(data_dir, require_data),
                       encoder_shape)
    # jobs that refer to others (token_controlled, adapter_match) are built after them, then
    # every job is emitted in manifest order
    ordered = sorted(manifest.experiments, key=lambda e: STRATEGIES[e.strategy].needs_reference
                     or e.adapter_match is not None)
    by_exp: dict[str, list[Job]] = {}
    for exp in ordered:
        expand = STRATEGIES[exp.strategy].expand
        by_exp[exp.name] = [job for seed in manifest.study.seeds for alias in exp.models
                            for job in expand(builder, exp, seed, alias)]
    seen: dict[str, Job] = {}
    for exp in manifest.experiments:
        for job in by_exp[exp.name]:
            if job.job_id in seen:
                other = seen[job.job_id]
                raise InputError(manifest.path, f"experiment {job.experiment!r} repeats job "
                                 f"{job.job_id} of experiment {other.experiment!r} (same model, "
                                 f"tasks, seed and hyperparameters): remove one",
                                 where=f"experiments.{job.experiment}")
            seen[job.job_id] = job
    return Plan(manifest=manifest, data_dir=Path(data_dir), jobs=tuple(seen.values()))


class _Builder:
    """What a strategy's ``expand`` builds its jobs with: ``job`` (one job of an experiment,
    its id from the cached canonical JSON of its parts) and ``reference`` (a job already
    built).  Caches per experiment and task set, so 10,000 jobs encode little JSON."""

    def __init__(self, manifest: Manifest, data_dir: Path, sums: dict[str, str] | None,
                 encoder_shape: EncoderShape | None = None):
        self.manifest, self.data_dir, self.sums = manifest, data_dir, sums
        self.encoder_shape = encoder_shape
        self.built: dict[tuple, Job] = {}   # (experiment, seed, model alias, tasks) -> job
        self._data: dict[tuple, tuple[dict, str]] = {}
        self._configs: dict[tuple, tuple[dict, str, str]] = {}
        self._models: dict[str, tuple[str, str]] = {}
        self._matches: dict[tuple, Any] = {}
        self._rows: dict[str, int | None] = {}

    def reference(self, experiment: str, seed: int, alias: str, tasks: tuple[str, ...]) -> Job:
        return self.built[(experiment, seed, alias, tasks)]

    def job(self, exp, seed: int, alias: str, tasks: tuple[str, ...],
            reference: Job | None = None) -> Job:
        """One job of ``exp``; ``reference``: the job it is matched to (token_controlled:
        the multi-task job whose tokens it trains to, and its parity rule)."""
        key_name, model_name = self.model(alias)
        cfg, cfg_json, tasks_json = self.config(exp, tasks)
        if exp.adapter_match is not None:
            cfg = {**cfg, "adapter": self.matched_adapter(exp, alias, tasks[0], seed)}
            cfg_json = canonical_json({k: v for k, v in cfg.items() if k not in NOT_IN_ID})
        if "control" in cfg and reference is not None:
            cfg = text_control_config(cfg, reference)
            cfg_json = canonical_json({k: v for k, v in cfg.items() if k not in NOT_IN_ID})
        data, data_json = self.checksums(tasks)
        parity = exp.parity if reference is not None else None
        job_id = _fast_id(config=cfg_json, data_checksums=data_json, model=key_name,
                          parity=canonical_json(parity),
                          reference_job="null" if reference is None else f'"{reference.job_id}"',
                          seed=seed, strategy=canonical_json(exp.strategy), tasks=tasks_json)
        job = Job(job_id=job_id, study=self.manifest.study.name, experiment=exp.name,
                  strategy=exp.strategy, experiment_type=exp.experiment_type, model=alias,
                  model_name=model_name, tasks=tasks, seed=seed, config=_copy(cfg),
                  depends_on=() if reference is None else (reference.job_id,), parity=parity,
                  data_checksums=data)
        self.built[(exp.name, seed, alias, tasks)] = job
        return job

    def checksums(self, tasks: tuple[str, ...]) -> tuple[dict[str, str], str]:
        if tasks not in self._data:
            out = {} if self.sums is None else job_checksums(self.sums, tasks, self.data_dir)
            self._data[tasks] = (out, canonical_json(out))
        data, text = self._data[tasks]
        return dict(data), text

    def config(self, exp, tasks) -> tuple[dict, str, str]:
        """(resolved config, canonical JSON of its identity part, and of the tasks)."""
        key = (exp.name, tasks)
        if key not in self._configs:
            cfg = self.manifest.resolved_config(exp, tasks)
            if "decontaminate" in cfg:   # its training data depends on the evaluated files
                cfg["decontaminate"]["data_checksums"] = evaluated_checksums(
                    self.sums, cfg["decontaminate"]["against"], self.data_dir)
            if "warmup_cap" in cfg and not self.cap_binds(cfg, exp.strategy, tasks):
                del cfg["warmup_cap"]   # 500 steps either way: the id it had before the cap
            hashed = {k: v for k, v in cfg.items() if k not in NOT_IN_ID}
            self._configs[key] = (cfg, canonical_json(hashed), canonical_json(list(tasks)))
        return self._configs[key]

    def cap_binds(self, cfg: dict[str, Any], strategy: str, tasks: tuple[str, ...]) -> bool:
        """Whether the default warm-up's cap may make it shorter than ``warmup_steps``: True
        unless the job's planned optimizer steps are known here (max_steps, or epochs over
        the prepared training splits' rows) and are at least warmup_steps / cap.  A
        token-controlled job's steps follow its reference's tokens, and a decontaminated
        job's its kept rows: both keep the cap, which the engine applies."""
        steps = planned_steps(TrainConfig.from_dict(cfg), STRATEGIES[strategy].token_target,
                              tasks, self.train_rows, decontaminate="decontaminate" in cfg)
        return steps is None or \
            TrainConfig.from_dict(cfg).warmup_for(steps)[0] < int(cfg["warmup_steps"])

    def train_rows(self, task: str) -> int | None:
        """Rows of ``task``'s prepared training split (parquet metadata), None without data."""
        if self.sums is None:
            return None
        if task not in self._rows:
            try:
                self._rows[task] = pq_rows(self.data_dir / task / "train.parquet")
            except (OSError, ValueError, ArrowException):
                self._rows[task] = None
        return self._rows[task]

    def model(self, alias: str) -> tuple[str, str]:
        """(canonical JSON of the model's key, the hub id or path the engine loads)."""
        if alias not in self._models:
            key = model_key(alias, self.manifest.models)
            self._models[alias] = (canonical_json(key),
                                   resolve_model(alias, self.manifest.models))
        return self._models[alias]

    def matched_adapter(self, exp, alias: str, task: str, seed: int) -> dict[str, Any]:
        """exp's adapter with r matched to the multi-task job of this model and seed."""
        manifest = self.manifest
        ref_exp = manifest.experiment(exp.adapter_match)
        (ref_set,) = ref_exp.task_sets
        ref = self.reference(ref_exp.name, seed, alias, ref_set)
        where = f"experiments.{exp.name}.adapter_match"
        key = (exp.name, alias, task)
        if key not in self._matches:
            settings = ref_exp.adapter
            if self.encoder_shape is None:
                raise InputError(manifest.path, "adapter_match needs the encoder's LoRA shape "
                                 "at plan time: build_plan(..., encoder_shape="
                                 "runner.ml.lora.encoder_lora_shape)", where=where)
            # LoRA parameter counts need the encoder's shape (built on torch's meta device
            # by the function the CLI hands over)
            hidden, per_rank = self.encoder_shape(
                resolve_model(alias, manifest.models), model_key(alias, manifest.models),
                manifest.path, where, tuple(settings.target_modules))
            # matched on what reaches the held-out task: the encoder's LoRA (the heads are
            # thrown away there; counting them gave 11-13x larger single-task adapters)
            target = settings.r * per_rank
            try:
                m = rank_for(target, per_rank, 0)
            except InputError as err:
                raise InputError(manifest.path, err.message, where=where) from None
            heads = (sum(head_parameters(t, hidden) for t in ref_set),
                     head_parameters(task, hidden))
            self._matches[key] = (settings, m, heads)
        settings, m, (ref_heads, own_heads) = self._matches[key]
        out = settings.to_dict()
        # alpha / r (the update's scale) stays the matched experiment's
        out["r"], out["alpha"] = m.r, settings.alpha * m.r / settings.r
        out["matched_to"] = {"experiment": ref_exp.name, "job_id": ref.job_id,
                             "basis": "encoder",
                             "target_encoder_trainable": m.target_trainable,
                             "encoder_trainable": m.trainable,
                             "target_trainable": m.target_trainable + ref_heads,
                             "trainable": m.trainable + own_heads,
                             "relative_gap": m.relative_gap}
        return out


# ------------------------------------------------------------------------ models
def model_place(manifest: Manifest, alias: str) -> tuple[int | None, str]:
    """(line, key path) where the manifest chose ``alias``: its [models] entry, else the
    first experiment that lists it."""
    if alias in manifest.models:
        path: tuple = ("models", alias)
        where = f"models.{alias}"
    else:
        i = next(i for i, e in enumerate(manifest.experiments)
                 if alias in e.models and not STRATEGIES[e.strategy].needs_reference)
        path, where = ("experiments", i, "models"), f"experiments[{i}].models"
    try:
        text = Path(manifest.path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):   # parsed from a string: no file to point into
        return None, where
    return TomlLines(text.removeprefix("\ufeff")).line(path), where


def check_models(manifest: Manifest, aliases, load: Loader) -> None:
    """Load the config and tokenizer (no weights) of every distinct model in ``aliases`` once
    with ``load`` (runner.ml.pretrained.load_config_and_tokenizer, from ``runner run``);
    an InputError naming the manifest line of the first that cannot be had, what was tried
    and what to do -- before any job is claimed, instead of each job failing slowly."""
    problems = []
    for alias in dict.fromkeys(aliases):
        tried, why = model_problem(resolve_model(alias, manifest.models), load)
        if why is not None:
            problems.append((alias, tried, why))
    if not problems:
        return
    alias, tried, why = problems[0]
    line, where = model_place(manifest, alias)
    also = f" (also: {', '.join(p[0] for p in problems[1:])})" if problems[1:] else ""
    raise InputError(manifest.path, f"model {alias!r} cannot be had here: tried {tried}: "
                     f"{why}; {how_to_get(alias, tried)}{also}", where=where, line=line)


def models_report(manifest: Manifest, aliases) -> str:
    """Per distinct model: whether it resolves here, from files alone (a folder's or the hub
    cache's config.json: fast, nothing downloaded); `run` loads each before any job."""
    marks = {"here": "ok", "hub": "to fetch", "missing": "MISSING"}
    aliases = list(dict.fromkeys(aliases))
    width = max((len(a) for a in aliases), default=0)
    lines = ["models (from their files; `run` loads each config and tokenizer first):"]
    for alias in aliases:
        w = whereabouts(resolve_model(alias, manifest.models))
        lines.append(f"  {alias:<{width}}  {marks[w.state]}: {w.tried}: {w.note}")
    return "\n".join(lines)
