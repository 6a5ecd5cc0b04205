"""The training strategies, one entry each: what an experiment's ``strategy`` names, the
``experiment_type`` a job's result.json records for it (stats groups by it; both names are
``mtl_contract.schema``'s, so stats reads them from the same table), the keys its
``[[experiments]]`` table takes and how they are read (``read``, called by
runner.study.manifest), its training defaults, and how an experiment of it expands into jobs
(``expand``, called by runner.study.plan.build_plan per seed and model).  The one place a
strategy's name is tied to its type, its manifest keys and its jobs; the code below asks a
strategy's flags (``token_target``, ``early_stopping``, ``test_weights``, ...), never its
name.  Adding a strategy is one entry here plus, where its flags do not cover it, its
training branch in runner.recipes.train_job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from mtl_contract.schema import EXPERIMENT_TYPE, MT, ST, TC
from runner.errors import InputError

KeyPath = tuple  # a manifest key path: ("experiments", 2, "tasks")

PARITIES = ("total", "per_task")         # token_controlled: one target, or one per task
PARITY_TARGETS = ("total", "best")       # the reference's tokens at its end, or at its best
# token_controlled: what the control is (runner.recipes.text_control for "text"):
#   "repeat" -- the methodology's: the task's own data repeated to the token target (default)
#   "text"   -- text-matched: the multi-task job's schedule replayed with the other tasks' text
#               fed as unlabelled masked-LM batches (same tokens through the encoder, no
#               cross-task labels; parity by construction)
CONTROLS = ("repeat", "text")
# the text control replays its multi-task job: these settings are that job's (copied at plan
# time, runner.study.plan), so a token_controlled experiment with control = "text" may not set
# them itself
TEXT_CONTROL_COPIED = ("learning_rate", "warmup_steps", "warmup_ratio", "warmup_cap",
                       "weight_decay", "max_length",
                       "max_length_per_task", "batch_size", "grad_accumulation", "max_epochs",
                       "max_steps", "max_train_examples", "sampling", "temperature",
                       "examples_cap", "precision", "adapter", "decontaminate")
# token_controlled: a job whose target needs more than token_controlled_max_epochs passes
# (decided from the reference's measured tokens once it has finished) is recorded as not
# run ("skip", the default: its row could only read "parity not reached") or trained to the
# cap ("run"); README "Token-controlled jobs that cannot reach parity"
UNREACHABLE = ("skip", "run")

# ------------------------------------------------------------------ typed interfaces
class ManifestReader(Protocol):
    """What a strategy's ``read`` may use of the manifest parser (runner.study.parser)."""
    tasks: tuple[str, ...]   # the registry's task names

    def error(self, path: KeyPath, message: str) -> InputError: ...
    def string(self, value: Any, path: KeyPath) -> str: ...
    def str_list(self, value: Any, path: KeyPath, options, what: str) -> tuple[str, ...]: ...
    def choice(self, value: Any, options: tuple[str, ...], path: KeyPath) -> str: ...
    def task_sets(self, raw: dict, path: KeyPath) -> tuple[tuple[str, ...], ...]: ...


class ReadExperiment(Protocol):
    """(manifest reader, the experiment's table, its key path, the model aliases) -> the
    Experiment fields the strategy sets (the parser fills in the rest)."""
    def __call__(self, r: ManifestReader, raw: dict, path: KeyPath,
                 models: tuple[str, ...]) -> dict[str, Any]: ...


class Experiment(Protocol):
    """What an ``expand`` reads of an experiment (runner.study.manifest_types.Experiment)."""
    name: str
    task_sets: tuple[tuple[str, ...], ...]
    reference: str | None


class JobBuilder(Protocol):
    """What a strategy's ``expand`` builds jobs with (runner.study.plan's builder)."""
    def job(self, exp: Experiment, seed: int, alias: str, tasks: tuple[str, ...],
            reference: Any = None) -> Any: ...
    def reference(self, experiment: str, seed: int, alias: str,
                  tasks: tuple[str, ...]) -> Any: ...


class ExpandExperiment(Protocol):
    """(job builder, experiment, seed, model alias) -> that seed and model's jobs (plan Jobs),
    in run order."""
    def __call__(self, builder: JobBuilder, exp: Experiment, seed: int,
                 alias: str) -> list: ...


# ------------------------------------------------------------------ reading the manifest


def _read_tasks(r: ManifestReader, raw: dict, path: KeyPath, models: tuple[str, ...]) -> dict:
    """single_task: ``models`` and ``tasks``; a one-task set per task."""
    aliases = r.str_list(raw["models"], path + ("models",), models, "model")
    tasks = r.str_list(raw["tasks"], path + ("tasks",), r.tasks, "task")
    return {"models": aliases, "task_sets": tuple((t,) for t in tasks)}


def _read_task_sets(r: ManifestReader, raw: dict, path: KeyPath,
                    models: tuple[str, ...]) -> dict:
    """multi_task: ``models`` and ``task_sets`` (or "pairs" with ``pair_tasks``)."""
    return {"models": r.str_list(raw["models"], path + ("models",), models, "model"),
            "task_sets": r.task_sets(raw, path)}


def _read_reference(r: ManifestReader, raw: dict, path: KeyPath,
                    models: tuple[str, ...]) -> dict:
    """token_controlled: ``reference`` (its models and task sets are copied from that
    experiment once every experiment is read), ``parity``, ``parity_target`` and
    ``control``."""
    control = r.choice(raw.get("control", CONTROLS[0]), CONTROLS, path + ("control",))
    parity = r.choice(raw.get("parity", PARITIES[0]), PARITIES, path + ("parity",))
    if control == "text":
        if parity != "total":
            raise r.error(path + ("parity",), "control = \"text\" replays the whole multi-task "
                          "job, so every task's tokens match it: parity = \"total\" only")
        for key in TEXT_CONTROL_COPIED:
            if key in raw:
                raise r.error(path + (key,), "not allowed with control = \"text\": the "
                              "text-matched control trains with its multi-task job's setting")
    return {"reference": r.string(raw["reference"], path + ("reference",)),
            "parity": parity,
            "parity_target": r.choice(raw.get("parity_target", PARITY_TARGETS[0]),
                                      PARITY_TARGETS, path + ("parity_target",)),
            "control": control,
            "unreachable_parity": r.choice(raw.get("unreachable_parity", UNREACHABLE[0]),
                                           UNREACHABLE, path + ("unreachable_parity",))}


# ------------------------------------------------------------------------- expanding
def _a_job_per_task_set(builder: JobBuilder, exp: Experiment, seed: int, alias: str) -> list:
    """single_task (task sets of one task each) and multi_task: one job per task set."""
    return [builder.job(exp, seed, alias, task_set) for task_set in exp.task_sets]


def _a_job_per_task_of_the_reference(builder: JobBuilder, exp: Experiment, seed: int,
                                     alias: str) -> list:
    """token_controlled: for each task of each task set of the referenced multi-task
    experiment, one single-task job trained to that multi-task job's token count."""
    jobs = []
    for task_set in exp.task_sets:
        reference = builder.reference(exp.reference, seed, alias, task_set)
        jobs.extend(builder.job(exp, seed, alias, (task,), reference=reference)
                    for task in task_set)
    return jobs


@dataclass(frozen=True)
class Strategy:
    name: str
    experiment_type: str   # result.json's experiment_type
    description: str
    # its own [[experiments]] keys (the hyperparameters, adapter and heldout come on top),
    # those it requires, and why it refuses another strategy's models/tasks/task_sets
    keys: tuple[str, ...]
    required: tuple[str, ...]
    refuses_lists_because: str
    read: ReadExperiment             # the Experiment fields it sets
    expand: ExpandExperiment         # that seed and model's jobs, in order
    needs_reference: bool = False   # its jobs refer to another experiment's (built first)
    referable: bool = False         # token_controlled and adapter_match may refer to it
    samples_tasks: bool = False     # the sampling keys apply (else refused, kept neutral)
    # trains to the reference's token count: token_controlled_max_epochs applies, the
    # config records parity_target, and the schedule, the batches and the end of training
    # follow the target
    token_target: bool = False
    # validation stops training after `patience` evaluations without improvement (else it
    # only keeps the best weights, apart from the final ones)
    early_stopping: bool = True
    # the weights the test scores first (result.json test_weights): "best" validation
    # weights, or the "final" ones (the best validation weights are then tested second)
    test_weights: str = "best"
    # its jobs are the full-fine-tuning single-task baseline RQ1 compares multi-task with
    baseline: bool = False
    batch_size: int = 16            # examples per step unless the manifest says otherwise


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy(ST, EXPERIMENT_TYPE[ST], "one task per job",
             keys=("name", "strategy", "models", "tasks", "adapter_match"),
             required=("name", "models", "tasks"),
             refuses_lists_because="single_task experiments list 'tasks' (one job each)",
             read=_read_tasks, expand=_a_job_per_task_set, baseline=True),
    Strategy(MT, EXPERIMENT_TYPE[MT], "one shared encoder, a head per task, tasks sampled",
             keys=("name", "strategy", "models", "task_sets", "pair_tasks"),
             required=("name", "models", "task_sets"),
             refuses_lists_because="multi_task experiments list 'task_sets'",
             read=_read_task_sets, expand=_a_job_per_task_set,
             referable=True, samples_tasks=True, batch_size=8),
    Strategy(TC, EXPERIMENT_TYPE[TC],
             "one task per job, trained to the multi-task job's token count (parity)",
             keys=("name", "strategy", "reference", "parity", "parity_target", "control",
                   "unreachable_parity"),
             required=("name", "reference"),
             refuses_lists_because="token_controlled experiments take their models, tasks "
             "and seeds from the referenced multi_task experiment",
             read=_read_reference, expand=_a_job_per_task_of_the_reference,
             needs_reference=True, token_target=True, early_stopping=False,
             test_weights="final"),
)}


def experiment_type(strategy: str) -> str:
    return STRATEGIES[strategy].experiment_type

