"""Study manifests: TOML parsed once into frozen dataclasses.

Everything a manifest may say is checked here -- unknown keys and tables (with a "did you
mean"), types, ranges, task and model names, references between experiments -- and every
problem is one :class:`~runner.errors.InputError` line ``FILE:LINE: key.path: expected ...``.
Code below this module never sees a raw TOML dict.

Schema (see ``manifests/demo.toml`` for a commented example)::

    [study]            name (str), results (str, default "results/<name>"), seeds (list of int)
    [defaults]         training hyperparameters (HYPERPARAMETERS below), all optional
    [models]           alias = "hub-id-or-path"  (adds to / overrides the built-in aliases)
    [[experiments]]    name, strategy, then per strategy:
        single_task       models, tasks                 (one job per model x task x seed)
        multi_task        models, task_sets             (one job per model x set x seed)
                          or task_sets = "pairs" + pair_tasks (every unordered pair)
        token_controlled  reference (a multi_task experiment), parity "total" | "per_task",
                          parity_target "total" | "best" (the reference's tokens at its end,
                          the methodology's default, or at its best validation checkpoint),
                          control "repeat" | "text" (the methodology's control, default: its
                          own data repeated to the target; or text-matched: the multi-task
                          job replayed with the other tasks as unlabelled masked-LM text),
                          unreachable_parity "skip" | "run" (a job whose target needs more
                          than token_controlled_max_epochs passes: recorded as not run, the
                          default, or trained to the cap; repeat control only)
                          (one job per task of each referenced job; same models and seeds)
      + any hyperparameter, overriding [defaults] for this experiment only.
      + max_length_per_task = {task = n}: lowers max_length for those tasks (n <= max_length);
        every other task is cut at max_length, and the model's own limit caps both.
      + max_validation_examples = n or {task = n}: validate on a fixed, stratified subset of
        the validation split (early stopping, best weights); tests untouched (issue 28).
      + token_controlled_max_epochs (default 20, the methodology's): passes over its task after
        which a token-controlled job stops short of its target and records the shortfall; in
        [defaults] or token_controlled experiments only.
      + adapter (RQ2): a table {method = "lora", r, alpha, dropout, target_modules}, in
        [defaults] or per experiment (runner.study.adapter.settings_from_table); absent = full
        fine-tuning (config.adapter = null, so older job ids are unchanged).
      + adapter_match = "<multi_task experiment>" (single_task only): one LoRA per task whose
        rank is chosen at plan time so that its encoder-side trainable parameters (its LoRA,
        what reaches the held-out tasks) are closest to the multi-task job's shared LoRA; the
        adapter's
        target_modules, dropout and alpha / r come from that experiment.
      + heldout = true: after the job, evaluate its encoder on the [heldout] tasks.
      + decontaminate = true (also in [defaults]; default false, the methodology's setting):
        drop from the job's training data the units that overlap a validation or test unit
        of any task the study evaluates, [heldout] tasks included (runner.data.contamination).
    [heldout]          tasks (held-out task names), seeds (default [1]), max_steps (200),
                       max_train_examples (1000), max_eval_examples ("none"),
                       learning_rate (1e-3), train_mode "head" | "head_and_adapter" ("head"):
                       a fresh head (and the adapter) trained for this fixed budget per task
                       and seed; applies only to experiments that say heldout = true.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runner.data.tasks import HELD_OUT_TASKS, TASKS
from runner.errors import InputError
from runner.study.models import BUILTIN_MODELS, known_aliases
from runner.study.sampling import SAMPLINGS
from runner.study.strategies import STRATEGIES as STRATEGY_TABLE
from runner.study.strategies import Strategy, experiment_type
from stats.fileio import FileTooLarge, read_bounded
from stats.read.manifest import stats_problem

# the text-matched control's masked-LM stream: share of real, non-special tokens selected
# (BERT's 15%; of them 80% [MASK], 10% a random token, 10% unchanged)
MASK_PROBABILITY = 0.15

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

STRATEGIES = tuple(STRATEGY_TABLE)
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def known_tasks() -> tuple[str, ...]:
    """Task names from the registry (runner.data.tasks.TASKS: one file per task)."""
    from runner.data.tasks import TASKS

    return tuple(TASKS)


# ---------------------------------------------------------------------------- values
class _Bad(Exception):
    """A value check failed; the caller turns it into an InputError with file and line."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        rng = f" in [{lo}, {hi}]" if hi is not None else (f" >= {lo}" if lo is not None else "")
        if not _is_int(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            raise _Bad(f"expected an integer{rng}, got {v!r}")
        return int(v)
    return check


def _float(lo: float, hi: float | None, lo_open: bool) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        lo_txt = f"({lo}" if lo_open else f"[{lo}"
        rng = f"{lo_txt}, {hi}]" if hi is not None else f"{lo_txt}, inf)"
        ok = (_is_int(v) or isinstance(v, float)) and math.isfinite(v)
        ok = ok and (v > lo if lo_open else v >= lo) and (hi is None or v <= hi)
        if not ok:
            raise _Bad(f"expected a number in {rng}, got {v!r}")
        return float(v)
    return check


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if not isinstance(v, str) or v not in options:
            hint = _did_you_mean(v, options) if isinstance(v, str) else ""
            raise _Bad(f"expected one of {', '.join(map(repr, options))}, got {v!r}{hint}")
        return v
    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _Bad(f"expected true or false, got {v!r}")
    return v


def _optional_int(lo: int) -> Callable[[Any], int | None]:
    inner = _int(lo)

    def check(v: Any) -> int | None:
        # TOML has no null: leaving the key out means "no limit"; "none" says it explicitly.
        if v == "none":
            return None
        return inner(v)
    return check


def _per_task(v: dict, lo: int, hi: int | None, expected: str) -> Mapping[str, int]:
    """``{task = n, ...}`` with known task names and lo <= n (<= hi)."""
    tasks = known_tasks()
    out = {}
    for task, n in v.items():
        if task not in tasks:
            raise _Bad(f"unknown task {task!r}{_did_you_mean(task, tasks)}")
        if not _is_int(n) or n < lo or (hi is not None and n > hi):
            raise _Bad(f"expected {expected} for task {task!r}, got {n!r}")
        out[task] = int(n)
    return MappingProxyType(out)


def _max_train_examples(v: Any) -> Mapping[str, int]:
    """``{task = n, ...}`` per task, or one integer for every task of the job."""
    if _is_int(v):
        return MappingProxyType({"*": _int(1)(v)})
    if not isinstance(v, dict):
        raise _Bad(f"expected an integer >= 1 or a table task = integer, got {v!r}")
    return _per_task(v, 1, None, "an integer >= 1")


def _max_length_per_task(v: Any) -> Mapping[str, int]:
    """``{task = n, ...}``: the tasks cut below max_length (checked against it once parsed)."""
    if not isinstance(v, dict):
        raise _Bad(f"expected a table task = integer (tokens), got {v!r}")
    return _per_task(v, 8, 8192, "an integer in [8, 8192]")


# name -> (check, default).  Defaults are the methodology's; batch_size None means
# "16 for single-task jobs, 8 for multi-task jobs".
HYPERPARAMETERS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "learning_rate": (_float(0.0, 1.0, True), 2e-5),
    # optimizer steps of linear warm-up; None (the default): min(500, 10% of the job's planned
    # optimizer steps), the methodology's "500 -- ~10% of training" (runner.study.config)
    "warmup_steps": (_int(0), None),
    # the alternative: this share of the job's planned optimizer steps (one of the two keys)
    "warmup_ratio": (_float(0.0, 1.0, False), None),
    "weight_decay": (_float(0.0, 1.0, False), 0.01),
    "max_length": (_int(8, 8192), 512),             # tokens per example (model's limit caps)
    "max_length_per_task": (_max_length_per_task, MappingProxyType({})),  # lowers max_length
    "batch_size": (_int(1, 65536), None),           # examples per optimizer micro-batch
    "grad_accumulation": (_int(1, 4096), 1),
    "max_epochs": (_int(1, 10000), 10),
    "eval_every": (_int(1), 250),                   # optimizer steps between evaluations
    "patience": (_int(1, 1000), 3),                 # evaluations without improvement
    "min_delta": (_float(0.0, 1.0, False), 1e-4),   # smallest improvement that counts
    "max_train_examples": (_max_train_examples, MappingProxyType({})),
    "max_eval_examples": (_optional_int(1), None),  # cap on validation and test examples
    # per task (or one integer): a fixed, stratified subset of its VALIDATION split for model
    # selection and early stopping (runner.data.splits.validation_subset); tests untouched.
    # In a job's config (and id) only when it names one of the job's tasks (issue 28)
    "max_validation_examples": (_max_train_examples, MappingProxyType({})),
    "checkpoint_every_s": (_float(0.0, None, True), 300.0),  # seconds
    "precision": (_choice(PRECISIONS), "auto"),
    "sampling": (_choice(SAMPLINGS), "proportional"),
    "temperature": (_float(0.0, 1000.0, True), 1.0),
    "examples_cap": (_optional_int(1), None),
    "max_steps": (_optional_int(1), None),          # optimizer steps; demos and tests
    # passes over its task after which a token-controlled job stops short of its target (the
    # methodology's "num_epochs": 20 for the token-controlled baseline); its jobs only
    "token_controlled_max_epochs": (_int(1, 10000), 20),
    # torch.compile the encoder (CUDA only; ignored on CPU): how, not what, so not in job ids
    "compile": (_bool, False),
    # keep a finished job's best weights (checkpoints/best/) for `runner evaluate` (RQ3);
    # false deletes them once result.json is written (BERT-base: ~440 MB a job, and a Kaggle
    # session saves at most 20 GB).  What is kept, not what is computed: not in job ids.
    "keep_weights": (_bool, True),
}
# RQ2 held-out evaluation ([heldout] table): key -> (check, default).
HELDOUT_TASKS = HELD_OUT_TASKS   # the registry's: every TaskSpec with held_out=True
HELDOUT_TRAIN_MODES = ("head", "head_and_adapter")
HELDOUT_KEYS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "max_steps": (_int(1), 200),                    # optimizer steps of the fresh head
    "max_train_examples": (_int(1), 1000),          # training subset of the held-out task
    "max_eval_examples": (_optional_int(1), None),  # cap on its validation and test examples
    "learning_rate": (_float(0.0, 1.0, True), 1e-3),  # a fresh head needs more than 2e-5
    "train_mode": (_choice(HELDOUT_TRAIN_MODES), "head"),
    # examples per step of the fresh head: one value for every job, so multi-task sources
    # (batch 8 by default) and single-task ones (16) get the same held-out budget
    "batch_size": (_int(1, 65536), 16),
}
# The two ways to say the warm-up: one of them per table; an experiment's replaces [defaults]'s.
WARMUP_KEYS = ("warmup_steps", "warmup_ratio")
# The default warm-up (neither key given): the methodology's 500 steps, "~10% of training",
# never more than that share of the job's planned optimizer steps.
DEFAULT_WARMUP_STEPS, DEFAULT_WARMUP_CAP = 500, 0.1
# Only strategies that sample between tasks take the sampling keys; only those that train to a
# token target take its epoch cap (runner.study.strategies: samples_tasks, token_target).
SAMPLING_KEYS = ("sampling", "temperature", "examples_cap")
TOKEN_TARGET_KEYS = ("token_controlled_max_epochs",)
# What data a job trains on, in [defaults] or per experiment; in a job's config (and id) only
# when on.  decontaminate: drop the training units that overlap (exact or 13-gram,
# runner.data.contamination) a validation or test unit of any task the study evaluates.
DATA_KEYS: dict[str, tuple[Callable[[Any], Any], Any]] = {"decontaminate": (_bool, False)}


# ---------------------------------------------------------------------- dataclasses
# [study] tracking: the backends of runner.observe.tracking (KNOWN_BACKENDS; a test keeps the
# two equal -- the study layer does not import the observe layer, which sits above it)
TRACKING_BACKENDS = ("tensorboard", "mlflow", "wandb")


@dataclass(frozen=True)
class Study:
    name: str
    results: str          # folder of the study's results (relative to the working folder)
    seeds: tuple[int, ...]
    results_line: int | None = None   # where `results` is set, for errors about that folder
    # experiment-tracking backends (runner.observe.tracking); not part of any job's identity
    tracking: tuple[str, ...] = ()


@dataclass(frozen=True)
class Experiment:
    name: str
    strategy: str                           # single_task | multi_task | token_controlled
    models: tuple[str, ...]                 # aliases; token_controlled: the reference's
    task_sets: tuple[tuple[str, ...], ...]  # one job per set (single_task: 1-task sets)
    reference: str | None                   # token_controlled: a multi_task experiment
    parity: str | None                      # token_controlled: "total" | "per_task"
    overrides: Mapping[str, Any]            # validated hyperparameters for this experiment
    line: int | None = None
    adapter: Any = None                     # LoraSettings (own table, else [defaults]) | None
    adapter_match: str | None = None        # single_task: multi_task experiment to match
    heldout: bool = False                   # evaluate on the [heldout] tasks after the job
    parity_target: str | None = None        # token_controlled: "total" | "best"
    control: str | None = None              # token_controlled: "repeat" | "text"
    unreachable_parity: str | None = None   # token_controlled: "skip" | "run" (issue 28)

    @property
    def experiment_type(self) -> str:
        return experiment_type(self.strategy)


@dataclass(frozen=True)
class Manifest:
    path: str
    study: Study
    defaults: Mapping[str, Any]   # validated [defaults] (only the keys that were given)
    models: Mapping[str, str]     # [models] aliases added by this manifest
    experiments: tuple[Experiment, ...]
    heldout: Mapping[str, Any] | None = None  # resolved [heldout] settings (JSON-ready)

    def experiment(self, name: str) -> Experiment:
        for exp in self.experiments:
            if exp.name == name:
                return exp
        raise KeyError(name)

    def evaluated_tasks(self) -> tuple[str, ...]:
        """Every task the study evaluates (its experiments' and its [heldout] tasks), in the
        registry's order."""
        named = {t for e in self.experiments for ts in e.task_sets for t in ts}
        named.update((self.heldout or {}).get("tasks", ()))
        return tuple(t for t in known_tasks() if t in named)

    def resolved_config(self, exp: Experiment, tasks: tuple[str, ...]) -> dict[str, Any]:
        """Every hyperparameter of one job: defaults <- [defaults] <- experiment."""
        defaults = self.defaults
        if any(k in exp.overrides for k in WARMUP_KEYS):
            defaults = {k: v for k, v in defaults.items() if k not in WARMUP_KEYS}
        given = {**defaults, **exp.overrides}
        cfg: dict[str, Any] = {}
        for key, (_, default) in HYPERPARAMETERS.items():
            cfg[key] = given.get(key, default)
        warmup_config(cfg)
        strategy = STRATEGY_TABLE[exp.strategy]
        if cfg["batch_size"] is None:
            cfg["batch_size"] = strategy.batch_size
        caps = cfg["max_train_examples"]
        cfg["max_train_examples"] = {t: caps.get(t, caps.get("*")) for t in tasks
                                     if t in caps or "*" in caps}
        if not strategy.samples_tasks:
            # Sampling means nothing for one task: keep it neutral so that editing the
            # multi-task sampling in [defaults] never renames single-task jobs.
            for key in SAMPLING_KEYS:
                cfg[key] = HYPERPARAMETERS[key][1]
        # adapter_match experiments get theirs (rank matched) from runner.study.plan
        cfg["adapter"] = None if exp.adapter is None else exp.adapter.to_dict()
        if exp.heldout and self.heldout is not None:
            # only where asked: other jobs keep the config (and the job id) they had
            cfg["heldout"] = {k: (list(v) if isinstance(v, tuple) else v)
                              for k, v in self.heldout.items()}
        vcaps = cfg.pop("max_validation_examples")
        vcaps = {t: vcaps.get(t, vcaps.get("*")) for t in tasks if t in vcaps or "*" in vcaps}
        if vcaps:   # none: the config (and job id) it had before
            cfg["max_validation_examples"] = vcaps
        lengths = _lengths_per_task(cfg, tasks + tuple(cfg.get("heldout", {}).get("tasks", ())))
        del cfg["max_length_per_task"]
        if lengths is not None:
            cfg["max_length_per_task"] = lengths
        for key in TOKEN_TARGET_KEYS:
            del cfg[key]  # in token-controlled jobs only: the others keep their ids
        if strategy.token_target:
            cfg["token_controlled_max_epochs"] = given.get(
                "token_controlled_max_epochs", HYPERPARAMETERS["token_controlled_max_epochs"][1])
            cfg["parity_target"] = exp.parity_target
            # what to do when the target is out of reach: not what a job computes once it
            # runs, so not in its id (runner.study.plan.NOT_IN_ID)
            cfg["unreachable_parity"] = exp.unreachable_parity or "skip"
            if exp.control == "text":   # the default ("repeat") keeps the config and job id
                # the rest of the block (the tasks, the multi-task job's settings) comes from
                # the referenced job, in runner.study.plan
                del cfg["token_controlled_max_epochs"]   # t is seen as in the multi-task job
                cfg["control"] = {"kind": "text", "mask_probability": MASK_PROBABILITY}
        if given.get("decontaminate", False):   # off: the config (and job id) it had before
            from runner.data.contamination import DEFAULT_N
            cfg["decontaminate"] = {"n": DEFAULT_N, "against": list(self.evaluated_tasks())}
        return cfg


def warmup_config(cfg: dict[str, Any]) -> None:
    """The warm-up keys of a job's config, in place, so that a job id changes only where its
    schedule does: ``warmup_steps = N`` given -> {"warmup_steps": N} (as before the ratio
    existed); ``warmup_ratio = r`` -> {"warmup_ratio": r}; neither -> {"warmup_steps": 500,
    "warmup_cap": 0.1} (500 steps, at most 10% of the planned steps), from which the plan drops
    ``warmup_cap`` where it can show that the cap does not bind (runner.study.plan), so that
    such a job keeps the id it had when every job warmed up for 500 steps."""
    if cfg["warmup_ratio"] is not None:
        del cfg["warmup_steps"]
        return
    del cfg["warmup_ratio"]
    if cfg["warmup_steps"] is None:
        cfg["warmup_steps"] = DEFAULT_WARMUP_STEPS
        cfg["warmup_cap"] = DEFAULT_WARMUP_CAP


def _former_max_length(task: str) -> int:
    """The sequence cap ``task`` declared before the manifest's max_length alone decided
    (issue 12; its TaskSpec's ``former_max_length``).  A job whose tasks are all cut at
    max_length <= these computes what it computed then: its config leaves out
    max_length_per_task, so its job id is unchanged; every other job records its per-task
    lengths, which changes its id with its computation."""
    spec = TASKS.get(task)
    return spec.former_max_length if spec is not None else 0


def _lengths_per_task(cfg: dict[str, Any], tasks: tuple[str, ...]) -> dict[str, int] | None:
    """``{task: length}`` the job cuts each task's sequences at (before the model's limit), or
    None where that is max_length for every task and no task's former cap was lower, i.e.
    where the job computes what it did before this key existed (each TaskSpec's
    former_max_length)."""
    lower, top = cfg["max_length_per_task"], int(cfg["max_length"])
    lengths = {t: int(lower.get(t, top)) for t in tasks}
    if all(n == top <= _former_max_length(t) for t, n in lengths.items()):
        return None
    return lengths


# ------------------------------------------------------------------------- parsing
def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_RE = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")


def _split_dotted(text: str) -> tuple[str, ...]:
    return tuple(p.strip().strip("\"'") for p in text.split("."))


class TomlLines:
    """Where a key path sits in the TOML source (best effort: plain keys and headers)."""

    def __init__(self, text: str):
        self.where: dict[tuple, int] = {}
        counters: dict[tuple, int] = {}
        table: tuple = ()
        in_multiline = False
        for no, line in enumerate(text.splitlines(), start=1):
            # skip the inside of multi-line strings (rare in manifests)
            if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                in_multiline = not in_multiline
                continue
            if in_multiline:
                continue
            m = _HEADER_RE.match(line)
            if m and "=" not in m.group(2):
                parts = _split_dotted(m.group(2))
                if m.group(1) == "[[":
                    idx = counters.get(parts, 0)
                    counters[parts] = idx + 1
                    table = parts + (idx,)
                else:
                    # [experiments.x] under an array of tables refers to its last element
                    table = parts
                self.where.setdefault(table, no)
                continue
            k = _KEY_RE.match(line)
            if k:
                self.where.setdefault(table + (k.group(1).strip("\"'"),), no)

    def line(self, path: tuple) -> int | None:
        for n in range(len(path), 0, -1):
            if path[:n] in self.where:
                return self.where[path[:n]]
        return None


def _path_text(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class _Parser:
    def __init__(self, file: str, text: str):
        self.file = file
        self.lines = TomlLines(text)
        self.tasks = known_tasks()

    def error(self, path: tuple, message: str) -> InputError:
        return InputError(self.file, message, where=_path_text(path) or None,
                          line=self.lines.line(path))

    def table(self, value: Any, path: tuple, allowed, required=()) -> dict:
        if not isinstance(value, dict):
            raise self.error(path, f"expected a table, got {type(value).__name__}")
        for key in value:
            if key not in allowed:
                raise self.error(path + (key,), f"unknown key{_did_you_mean(key, allowed)}; "
                                 f"expected one of: {', '.join(sorted(allowed))}")
        for key in required:
            if key not in value:
                raise self.error(path, f"missing key {key!r}")
        return value

    def string(self, value: Any, path: tuple, pattern: re.Pattern | None = None) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(path, f"expected a non-empty string, got {value!r}")
        if pattern is not None and not pattern.match(value):
            raise self.error(path, f"expected a name of letters, digits, '_', '-', '.' "
                             f"(at most 64, starting with a letter or digit), got {value!r}")
        return value

    def str_list(self, value: Any, path: tuple, options, what: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.error(path, f"expected a non-empty list of {what} names, got {value!r}")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or item not in options:
                hint = _did_you_mean(item, options) if isinstance(item, str) else ""
                raise self.error(path + (i,), f"unknown {what} {item!r}{hint}; "
                                 f"expected one of: {', '.join(options)}")
            if item in out:
                raise self.error(path + (i,), f"{what} {item!r} is listed twice")
            out.append(item)
        return tuple(out)

    def hyper(self, value: Mapping, path: tuple) -> Mapping[str, Any]:
        if all(k in value for k in WARMUP_KEYS):
            raise self.error(path + (WARMUP_KEYS[1],), "give warmup_steps or warmup_ratio, "
                             "not both (the other is derived from the job's planned steps)")
        out = {}
        for key, (check, _) in {**HYPERPARAMETERS, **DATA_KEYS}.items():
            if key in value:
                try:
                    out[key] = check(value[key])
                except _Bad as bad:
                    raise self.error(path + (key,), str(bad)) from None
        return MappingProxyType(out)

    def canonical(self, tasks: tuple[str, ...]) -> tuple[str, ...]:
        # A task set is a set: its order is the study's task order, so that
        # ["jnlpba", "bc2gm"] and ["bc2gm", "jnlpba"] are the same job.
        return tuple(sorted(tasks, key=self.tasks.index))

    # -- sections -------------------------------------------------------------
    def study(self, doc: dict) -> Study:
        path = ("study",)
        if "study" not in doc:
            raise self.error((), "missing table [study] (name, seeds)")
        raw = self.table(doc["study"], path, ("name", "results", "seeds", "tracking"),
                         ("name", "seeds"))
        name = self.string(raw["name"], path + ("name",), _NAME_RE)
        results = (self.string(raw["results"], path + ("results",)) if "results" in raw
                   else f"results/{name}")
        seeds = raw["seeds"]
        if not isinstance(seeds, list) or not seeds:
            raise self.error(path + ("seeds",), f"expected a non-empty list of integers, "
                             f"got {seeds!r}")
        for i, s in enumerate(seeds):
            if not _is_int(s) or not 0 <= s < 2**32:
                raise self.error(path + ("seeds", i), f"expected an integer in [0, 2**32), "
                                 f"got {s!r}")
            if s in seeds[:i]:
                raise self.error(path + ("seeds", i), f"seed {s} is listed twice")
        tracking: tuple[str, ...] = ()
        if raw.get("tracking", []) != []:
            tracking = self.str_list(raw["tracking"], path + ("tracking",), TRACKING_BACKENDS,
                                     "tracking backend")
        return Study(name=name, results=results, seeds=tuple(int(s) for s in seeds),
                     results_line=self.lines.line(path + ("results",)), tracking=tracking)

    def models(self, doc: dict) -> Mapping[str, str]:
        raw = doc.get("models", {})
        if not isinstance(raw, dict):
            raise self.error(("models",), "expected a table alias = \"hub-id-or-path\"")
        out = {}
        for alias, target in raw.items():
            if not _NAME_RE.match(alias):
                raise self.error(("models", alias), "expected an alias of letters, digits, "
                                 "'_', '-', '.'")
            out[alias] = self.string(target, ("models", alias))
        return MappingProxyType(out)

    def experiment(self, raw: Any, idx: int, models: tuple[str, ...],
                   default_adapter: Any = None) -> Experiment:
        """The ``idx``-th ``[experiments.X]`` table, validated: the keys its strategy
        (runner.study.strategies) takes, then the fields the strategy reads."""
        path = ("experiments", idx)
        strategy = self.strategy_of(raw, path)
        self.strategy_keys(raw, path, strategy)
        name = self.string(raw["name"], path + ("name",), _NAME_RE)
        overrides = self.hyper(raw, path)
        fields = strategy.read(self, raw, path, models)
        adapter, adapter_match = self.experiment_adapter(raw, path, default_adapter)
        heldout = raw.get("heldout", False)
        if not isinstance(heldout, bool):
            raise self.error(path + ("heldout",), f"expected true or false, got {heldout!r}")
        return Experiment(**{"models": (), "task_sets": (), "reference": None, "parity": None,
                             **fields},
                          name=name, strategy=strategy.name, overrides=overrides,
                          line=self.lines.line(path), adapter=adapter,
                          adapter_match=adapter_match, heldout=heldout)

    def strategy_of(self, raw: Any, path: tuple) -> Strategy:
        if not isinstance(raw, dict):
            raise self.error(path, "expected a table")
        if "strategy" not in raw:
            raise self.error(path, f"missing key 'strategy' ({' | '.join(STRATEGIES)})")
        return STRATEGY_TABLE[self.choice(raw["strategy"], STRATEGIES, path + ("strategy",))]

    def strategy_keys(self, raw: dict, path: tuple, strategy: Strategy) -> None:
        """Another strategy's keys get a message saying why they are not taken here; then
        unknown keys (with a "did you mean") and missing required ones."""
        for key in raw:
            if key in ("models", "tasks", "task_sets") and key not in strategy.keys:
                raise self.error(path + (key,),
                                 f"not allowed here: {strategy.refuses_lists_because}")
            if key in SAMPLING_KEYS and not strategy.samples_tasks:
                raise self.error(path + (key,), "sampling settings apply to multi_task "
                                 "experiments only")
            if key in TOKEN_TARGET_KEYS and not strategy.token_target:
                raise self.error(path + (key,), "applies to token_controlled experiments "
                                 "only (or [defaults], for them)")
        hyper_keys = [k for k in HYPERPARAMETERS
                      if strategy.samples_tasks or k not in SAMPLING_KEYS]
        self.table(raw, path, strategy.keys + ("adapter", "heldout") + tuple(hyper_keys)
                   + tuple(DATA_KEYS), strategy.required)

    def experiment_adapter(self, raw: dict, path: tuple, default_adapter: Any):
        """(adapter, adapter_match): the experiment's own adapter table, else [defaults]'s;
        with adapter_match none yet (set from the matched experiment once all are read)."""
        adapter = self.adapter(raw["adapter"], path + ("adapter",)) if "adapter" in raw \
            else default_adapter
        if "adapter_match" not in raw:
            return adapter, None
        adapter_match = self.string(raw["adapter_match"], path + ("adapter_match",))
        if "adapter" in raw:
            raise self.error(path + ("adapter",), "not allowed with adapter_match: the "
                             "adapter comes from the matched multi_task experiment (its "
                             "target_modules, dropout and alpha / r; r is matched)")
        return None, adapter_match

    def choice(self, value: Any, options: tuple[str, ...], path: tuple) -> str:
        try:
            return _choice(options)(value)
        except _Bad as bad:
            raise self.error(path, str(bad)) from None

    def adapter(self, value: Any, path: tuple):
        from runner.study.adapter import ADAPTER_KEYS, settings_from_table

        self.table(value, path, ADAPTER_KEYS, ("r",))  # unknown keys with a "did you mean"
        try:
            return settings_from_table(value, self.file, where=_path_text(path))
        except InputError as err:
            raise InputError(self.file, err.message, where=err.where,
                             line=self.lines.line(path)) from None

    def heldout(self, doc: dict) -> Mapping[str, Any] | None:
        if "heldout" not in doc:
            return None
        path = ("heldout",)
        raw = self.table(doc["heldout"], path, ("tasks", "seeds") + tuple(HELDOUT_KEYS),
                         ("tasks",))
        out: dict[str, Any] = {"tasks": list(self.str_list(raw["tasks"], path + ("tasks",),
                                                           HELDOUT_TASKS, "held-out task"))}
        seeds = raw.get("seeds", [1])
        if not isinstance(seeds, list) or not seeds:
            raise self.error(path + ("seeds",), f"expected a non-empty list of integers, "
                             f"got {seeds!r}")
        for i, s in enumerate(seeds):
            if not _is_int(s) or not 0 <= s < 2**32 or s in seeds[:i]:
                raise self.error(path + ("seeds", i), f"expected distinct integers in "
                                 f"[0, 2**32), got {s!r}")
        out["seeds"] = [int(s) for s in seeds]
        for key, (check, default) in HELDOUT_KEYS.items():
            try:
                out[key] = check(raw[key]) if key in raw else default
            except _Bad as bad:
                raise self.error(path + (key,), str(bad)) from None
        return MappingProxyType(out)

    def task_sets(self, raw: dict, path: tuple) -> tuple[tuple[str, ...], ...]:
        value = raw["task_sets"]
        if value == "pairs":
            if "pair_tasks" not in raw:
                raise self.error(path, "task_sets = \"pairs\" needs pair_tasks = [...] "
                                 "(every unordered pair of these tasks is one job)")
            tasks = self.str_list(raw["pair_tasks"], path + ("pair_tasks",), self.tasks, "task")
            if len(tasks) < 2:
                raise self.error(path + ("pair_tasks",), "expected at least 2 tasks")
            return tuple(self.canonical(p) for p in itertools.combinations(tasks, 2))
        if "pair_tasks" in raw:
            raise self.error(path + ("pair_tasks",), "only used with task_sets = \"pairs\"")
        if not isinstance(value, list) or not value:
            raise self.error(path + ("task_sets",), "expected a non-empty list of task lists "
                             "(e.g. [[\"bc2gm\", \"jnlpba\"]]) or \"pairs\"")
        out: list[tuple[str, ...]] = []
        for i, item in enumerate(value):
            where = path + ("task_sets", i)
            tasks = self.str_list(item, where, self.tasks, "task")
            if len(tasks) < 2:
                raise self.error(where, "expected at least 2 tasks in a multi-task set "
                                 "(one task is a single_task experiment)")
            tasks = self.canonical(tasks)
            if tasks in out:
                raise self.error(where, f"task set {list(tasks)} is listed twice")
            out.append(tasks)
        return tuple(out)

    def manifest(self, doc: dict) -> Manifest:
        top = ("study", "defaults", "models", "experiments", "heldout", "stats")
        for key in doc:
            if key not in top:
                raise self.error((key,), f"unknown table{_did_you_mean(key, top)}; expected "
                                 f"one of: {', '.join(top)}")
        # [stats]: options of `python -m stats` (stats.read.manifest); no job depends on them
        bad_stats = stats_problem(doc.get("stats", {}))
        if bad_stats is not None:
            key, what = bad_stats
            raise self.error(("stats",) + ((key,) if key else ()), what)
        study = self.study(doc)
        defaults_raw = doc.get("defaults", {})
        self.table(defaults_raw, ("defaults",), tuple(HYPERPARAMETERS) + ("adapter",)
                   + tuple(DATA_KEYS))
        defaults = self.hyper(defaults_raw, ("defaults",))
        default_adapter = (self.adapter(defaults_raw["adapter"], ("defaults", "adapter"))
                           if "adapter" in defaults_raw else None)
        heldout = self.heldout(doc)
        models = self.models(doc)
        aliases = tuple(known_aliases(models))
        raw_exps = doc.get("experiments")
        if raw_exps is None:
            raise self.error((), "missing [[experiments]]: a study needs at least one")
        if not isinstance(raw_exps, list) or not raw_exps:
            raise self.error(("experiments",), "expected one or more [[experiments]] tables "
                             "(an array of tables, each with a name)")
        experiments: list[Experiment] = []
        for i, raw in enumerate(raw_exps):
            exp = self.experiment(raw, i, aliases, default_adapter)
            if any(e.name == exp.name for e in experiments):
                raise self.error(("experiments", i, "name"),
                                 f"duplicate experiment name {exp.name!r}")
            experiments.append(exp)
        by_name = {e.name: e for e in experiments}
        for i, exp in enumerate(experiments):
            if not STRATEGY_TABLE[exp.strategy].needs_reference:
                continue
            ref = by_name.get(exp.reference)
            where = ("experiments", i, "reference")
            if ref is None:
                names = [e.name for e in experiments if e.strategy == "multi_task"]
                raise self.error(where, f"no experiment named {exp.reference!r}"
                                 f"{_did_you_mean(exp.reference, names)}; expected the name "
                                 f"of a multi_task experiment")
            if ref.strategy != "multi_task":
                raise self.error(where, f"experiment {ref.name!r} is {ref.strategy}; expected "
                                 f"the name of a multi_task experiment")
            experiments[i] = replace(exp, models=ref.models, task_sets=ref.task_sets)
        self.rq2_links(experiments, by_name, heldout)
        for i, exp in enumerate(experiments):
            cfg = {**defaults, **exp.overrides}
            self.lengths_only_lower(cfg, exp, i)
            if not STRATEGY_TABLE[exp.strategy].samples_tasks:
                continue
            where = ("experiments", i)
            if cfg.get("sampling") == "capped" and cfg.get("examples_cap") is None:
                raise self.error(where + ("examples_cap",), "sampling = \"capped\" needs "
                                 "examples_cap = K (examples per task)")
            if cfg.get("sampling") == "temperature" and "temperature" not in cfg:
                raise self.error(where + ("temperature",), "sampling = \"temperature\" needs "
                                 "temperature = T (T > 0; 1 = proportional)")
        return Manifest(path=self.file, study=study, defaults=defaults, models=models,
                        experiments=tuple(experiments), heldout=heldout)

    def lengths_only_lower(self, cfg: dict, exp: Experiment, i: int) -> None:
        """max_length_per_task may only lower the experiment's max_length (a longer cut would
        be a second, hidden max_length)."""
        top = cfg.get("max_length", HYPERPARAMETERS["max_length"][1])
        for task, n in cfg.get("max_length_per_task", {}).items():
            if n > top:
                where = (("experiments", i) if "max_length_per_task" in exp.overrides
                         else ("defaults",)) + ("max_length_per_task", task)
                raise self.error(where, f"{n} is above max_length = {top} for experiment "
                                 f"{exp.name!r}; max_length_per_task may only lower it")

    def rq2_links(self, experiments: list[Experiment], by_name: dict, heldout) -> None:
        """adapter_match references and heldout = true, checked once every experiment is
        parsed (in place: a matched experiment takes its adapter from the reference)."""
        for i, exp in enumerate(experiments):
            if exp.adapter_match is not None:
                where = ("experiments", i, "adapter_match")
                ref = by_name.get(exp.adapter_match)
                names = [e.name for e in experiments if e.strategy == "multi_task"]
                if ref is None or ref.strategy != "multi_task":
                    what = "no experiment named" if ref is None else "not a multi_task experiment:"
                    raise self.error(where, f"{what} {exp.adapter_match!r}"
                                     f"{_did_you_mean(exp.adapter_match, names)}; expected the "
                                     f"name of a multi_task experiment with an adapter")
                if ref.adapter is None:
                    raise self.error(where, f"multi_task experiment {ref.name!r} has no adapter "
                                     f"to match (add an adapter table to it or to [defaults])")
                if len(ref.task_sets) != 1:
                    raise self.error(where, f"multi_task experiment {ref.name!r} has "
                                     f"{len(ref.task_sets)} task sets; matching needs exactly one")
                missing = [m for m in exp.models if m not in ref.models]
                if missing:
                    raise self.error(where, f"model(s) {', '.join(missing)} are not in "
                                     f"experiment {ref.name!r}, so there is nothing to match")
                experiments[i] = exp = replace(exp, adapter=ref.adapter)
            if exp.heldout:
                where = ("experiments", i, "heldout")
                if heldout is None:
                    raise self.error(where, "heldout = true needs a [heldout] table (tasks, "
                                     "seeds, max_steps, ...)")
                if heldout["train_mode"] == "head_and_adapter" and exp.adapter is None:
                    raise self.error(where, "[heldout] train_mode = \"head_and_adapter\" needs "
                                     "an adapter on this experiment")


_TOML_POS_RE = re.compile(r"\(at line (\d+), column \d+\)")


def parse_manifest(text: str, file: str = "<manifest>") -> Manifest:
    """Parse manifest text; raise InputError (one line) for anything wrong."""
    # Windows editors (Notepad) start UTF-8 files with a byte-order mark, which TOML does not
    # allow; it sits before line 1's first character, so dropping it keeps line numbers right.
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise InputError(file, "empty manifest; expected [study] and [[experiments]] tables")
    try:
        doc = tomllib.loads(text)
    except RecursionError:   # tomllib parses nested arrays / inline tables recursively
        raise InputError(file, "TOML nested too deep (arrays or inline tables inside each "
                         "other past Python's recursion limit); a manifest needs a few "
                         "levels") from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_POS_RE.search(msg)
        line = int(m.group(1)) if m else None
        msg = _TOML_POS_RE.sub("", msg).strip()
        raise InputError(file, f"TOML syntax error: {msg}", line=line) from None
    return _Parser(file, text).manifest(doc)


# a manifest is a few kilobytes; a file larger than this (bytes) is not one
MAX_MANIFEST_BYTES = 16 << 20


def load_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    try:
        raw = read_bounded(path, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise InputError(str(path), "manifest file not found") from None
    except IsADirectoryError:
        raise InputError(str(path), "expected a manifest file, got a folder") from None
    except FileTooLarge as exc:
        raise InputError(str(path), f"not a manifest: {exc}") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot read manifest: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(str(path), f"expected UTF-8 text ({exc.reason} at byte "
                         f"{exc.start})") from None
    return parse_manifest(text, str(path))


__all__ = [
    "BUILTIN_MODELS",
    "HYPERPARAMETERS",
    "Experiment",
    "Manifest",
    "Study",
    "known_tasks",
    "load_manifest",
    "parse_manifest",
]


def manifest_tasks(manifest) -> tuple[str, ...]:
    """Every task the manifest's experiments train on, in the study's task order."""
    order = known_tasks()
    found = {t for e in manifest.experiments for s in e.task_sets for t in s}
    return tuple(sorted(found, key=lambda t: order.index(t) if t in order else len(order)))


def has_pair_experiment(manifest) -> bool:
    """A multi_task experiment written as ``task_sets = "pairs"``: its sets are exactly every
    unordered pair of 3 or more tasks (the parser expands "pairs" into those)."""
    for e in manifest.experiments:
        if e.strategy != "multi_task" or not e.task_sets:
            continue
        tasks = {t for s in e.task_sets for t in s}
        if len(tasks) >= 3 and all(len(s) == 2 for s in e.task_sets) and \
                {frozenset(s) for s in e.task_sets} == \
                {frozenset(p) for p in itertools.combinations(tasks, 2)}:
            return True
    return False
