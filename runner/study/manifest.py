"""Study manifests: TOML parsed once into frozen dataclasses.

This module is the entry (:func:`load_manifest`, :func:`parse_manifest`) and the public names
of the manifest layer; the work is done in one module per idea:

* runner.study.values -- value checks (types, ranges, names);
* runner.study.keys -- what each table may say: keys, checks, defaults (TrainConfig's);
* runner.study.manifest_types -- the frozen dataclasses (Study, Experiment, Manifest);
* runner.study.resolve -- one job's config from defaults, [defaults] and its experiment;
* runner.study.compat -- the rules that keep old job ids and checkpoints valid;
* runner.study.toml_lines -- where a key path sits in the TOML source;
* runner.study.parser -- the parser: every check, each error one line with file and line.

Everything a manifest may say is checked there -- unknown keys and tables (with a "did you
mean"), types, ranges, task and model names, references between experiments -- and every
problem is one :class:`~runner.errors.InputError` line ``FILE:LINE: key.path: expected ...``.
Code below the parser never sees a raw TOML dict.

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
        the validation split (early stopping, best weights); tests untouched.
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

import itertools
import re
import sys
from pathlib import Path

from mtl_contract.files import FileTooLarge, read_bounded
from mtl_contract.schema import MAX_MANIFEST_BYTES
from runner.errors import InputError
from runner.study.compat import warmup_config  # noqa: F401  (the manifest's name for it)
from runner.study.config import HeldoutConfig
from runner.study.keys import (
    DATA_KEYS,
    DEFAULT_WARMUP_CAP,
    DEFAULT_WARMUP_STEPS,
    HELDOUT_KEYS,
    HELDOUT_TASKS,
    HELDOUT_TRAIN_MODES,
    HYPERPARAMETERS,
    MASK_PROBABILITY,
    PRECISIONS,
    SAMPLING_KEYS,
    TOKEN_TARGET_KEYS,
    TRACKING_BACKENDS,
    WARMUP_KEYS,
)
from runner.study.manifest_types import Experiment, Manifest, Study
from runner.study.models import BUILTIN_MODELS
from runner.study.parser import STRATEGY_NAMES as STRATEGIES
from runner.study.parser import Parser
from runner.study.strategies import STRATEGIES as STRATEGY_TABLE
from runner.study.toml_lines import TomlLines
from runner.study.values import known_tasks

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


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
    return Parser(file, text).manifest(doc)


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
    "DATA_KEYS",
    "DEFAULT_WARMUP_CAP",
    "DEFAULT_WARMUP_STEPS",
    "HELDOUT_KEYS",
    "HELDOUT_TASKS",
    "HELDOUT_TRAIN_MODES",
    "HYPERPARAMETERS",
    "MASK_PROBABILITY",
    "PRECISIONS",
    "SAMPLING_KEYS",
    "STRATEGIES",
    "TOKEN_TARGET_KEYS",
    "TRACKING_BACKENDS",
    "WARMUP_KEYS",
    "Experiment",
    "HeldoutConfig",
    "Manifest",
    "Study",
    "TomlLines",
    "has_pair_experiment",
    "known_tasks",
    "load_manifest",
    "manifest_tasks",
    "parse_manifest",
    "tomllib",
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
        if not STRATEGY_TABLE[e.strategy].samples_tasks or not e.task_sets:
            continue
        tasks = {t for s in e.task_sets for t in s}
        if len(tasks) >= 3 and all(len(s) == 2 for s in e.task_sets) and \
                {frozenset(s) for s in e.task_sets} == \
                {frozenset(p) for p in itertools.combinations(tasks, 2)}:
            return True
    return False
