"""Compatibility rules: what keeps finished jobs' ids, their checkpoints and their results
valid when the runner learns something new.

A job id hashes the job's resolved config (runner.study.plan), so a new setting that entered
every config would rename every finished job, and a checkpoint or result written before a
field existed must still be read as what it was.  Each rule below says what it keeps valid;
:data:`RULES` lists each once (tests/runner/study/test_compat.py holds that) and names where
it is applied.  :data:`COMPAT_VERSION` counts the rule set: a change that adds, drops or
changes a rule raises it, so a reader can tell which rules a runner applied.

Job ids (applied by runner.study.resolve while resolving a job's config):

* ``former_max_length``: a job whose every task is cut at ``max_length`` within the cap its
  TaskSpec declared before the manifest's ``max_length`` alone decided
  (``TaskSpec.former_max_length``) computes what it did then, so its config leaves out
  ``max_length_per_task`` (:func:`lengths_per_task`) and its id is unchanged.
* ``warmup_steps_alone``: ``warmup_steps = N`` given is ``{"warmup_steps": N}``, as before
  the ratio existed; the default is ``{"warmup_steps": 500, "warmup_cap": 0.1}``, whose cap
  runner.study.plan drops where the job's planned steps show it cannot bind (5,000 or more),
  the id every such job had when all warmed up for 500 steps (:func:`warmup_config`).
* ``neutral_sampling``: a strategy that does not sample between tasks keeps the sampling keys
  at their defaults, so editing the multi-task sampling in [defaults] never renames
  single-task jobs (:func:`neutral_sampling`).
* ``only_when_set``: keys that entered configs later are there only where they change the
  computation (:data:`ONLY_WHEN_SET`); every other job keeps the config it had.
* ``adapter_null``: a job without an adapter records ``adapter: null``, the config such jobs
  have always had, so their ids do not change.

Checkpoints (applied by runner.ml.checkpoint and runner.ml.train on resume):

* ``legacy_batch_order``: a checkpoint that records no batch order was written with
  :data:`LEGACY_BATCH_ORDER`; it resumes with that order, bit for bit.
* ``legacy_dropout``: one that records no dropout kind drew its masks with
  :data:`LEGACY_DROPOUT`; it resumes with those.
* ``per_task_history``: one whose validation history lacks tokens per task cannot give
  ``tokens_per_task_at_best``: the job restarts from scratch
  (:func:`predates_per_task_history`).

Results (applied by runner.recipes.train_job when a token-controlled job reads its
reference's result.json):

* ``best_entry_tokens``: a result written before ``tokens_at_best`` existed records the
  tokens at its best step in its validation history (:func:`reference_best_entry`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COMPAT_VERSION = 1

# rule -> (what it keeps valid, where it is applied)
RULES: dict[str, tuple[str, str]] = {
    "former_max_length": ("job ids of jobs cut within their task's former cap",
                          "runner.study.resolve"),
    "warmup_steps_alone": ("job ids from before warmup_ratio and the default's cap",
                           "runner.study.resolve, runner.study.plan"),
    "neutral_sampling": (("single-task and token-controlled job ids when [defaults] "
                          "sampling changes"), "runner.study.resolve"),
    "only_when_set": ("job ids from before each key in ONLY_WHEN_SET", "runner.study.resolve"),
    "adapter_null": ("job ids of full fine-tuning jobs", "runner.study.resolve"),
    "legacy_batch_order": ("checkpoints from before the batch order was recorded",
                           "runner.ml.checkpoint"),
    "legacy_dropout": ("checkpoints from before the dropout kind was recorded",
                       "runner.ml.checkpoint"),
    "per_task_history": (("checkpoints from before validation recorded tokens per task "
                          "(restarted, never resumed wrongly)"), "runner.ml.train"),
    "best_entry_tokens": ("reference results from before tokens_at_best",
                          "runner.recipes.train_job"),
}

# ---------------------------------------------------------------------------- checkpoints
LEGACY_BATCH_ORDER = "groups-of-50"   # checkpoints written before the order was recorded
LEGACY_DROPOUT = "torch"              # what checkpoints that record no dropout kind used


def predates_per_task_history(validation_history: list) -> bool:
    """A checkpoint of a runner whose validation history lacks tokens per task."""
    return any("tokens_per_task" not in h for h in validation_history)


# -------------------------------------------------------------------------------- results
def reference_best_entry(result: Mapping[str, Any]) -> dict:
    """A reference result's validation entry at its best step (results written before
    ``tokens_at_best`` existed still record the tokens there); {} where there is none."""
    best = (result.get("train_results") or {}).get("best_step")
    return next((h for h in result.get("validation_history") or [] if h.get("step") == best),
                {})


# -------------------------------------------------------------------------------- job ids
# Keys a job's config holds only where they change what it computes: key -> when.
ONLY_WHEN_SET: dict[str, str] = {
    "heldout": "the experiment says heldout = true",
    "max_validation_examples": "it names one of the job's tasks",
    "max_length_per_task": "a task is cut other than the former_max_length rule allows",
    "token_controlled_max_epochs": "a token-controlled job with the repeat control",
    "parity_target": "a token-controlled job",
    "unreachable_parity": "a token-controlled job",
    "control": "a token-controlled job with control = \"text\"",
    "decontaminate": "decontaminate = true",
    "warmup_cap": "the default warm-up, where the cap may bind",
}


def former_max_length(task: str) -> int:
    """The sequence cap ``task`` declared before the manifest's max_length alone decided (its
    TaskSpec's ``former_max_length``; 0 for a task that came later)."""
    from runner.data.tasks import TASKS

    spec = TASKS.get(task)
    return spec.former_max_length if spec is not None else 0


def lengths_per_task(max_length: int, lower: Mapping[str, int], tasks: tuple[str, ...]
                     ) -> dict[str, int] | None:
    """``{task: length}`` the job cuts each task's sequences at (before the model's limit), or
    None where that is max_length for every task and no task's former cap was lower, i.e.
    where the job computes what it did before the key existed (rule former_max_length)."""
    lengths = {t: int(lower.get(t, max_length)) for t in tasks}
    if all(n == max_length <= former_max_length(t) for t, n in lengths.items()):
        return None
    return lengths


def warmup_config(cfg: dict[str, Any], default_steps: int, default_cap: float) -> None:
    """The warm-up keys of a job's config, in place (rule warmup_steps_alone): ``warmup_steps
    = N`` given -> {"warmup_steps": N}; ``warmup_ratio = r`` -> {"warmup_ratio": r}; neither
    -> {"warmup_steps": default_steps, "warmup_cap": default_cap}, from which the plan drops
    ``warmup_cap`` where it can show that the cap does not bind."""
    if cfg["warmup_ratio"] is not None:
        del cfg["warmup_steps"]
        return
    del cfg["warmup_ratio"]
    if cfg["warmup_steps"] is None:
        cfg["warmup_steps"] = default_steps
        cfg["warmup_cap"] = default_cap


def neutral_sampling(cfg: dict[str, Any], keys: tuple[str, ...],
                     defaults: Mapping[str, Any]) -> None:
    """Sampling keys at their defaults, in place (rule neutral_sampling)."""
    for key in keys:
        cfg[key] = defaults[key]
