"""The manifest parser: a TOML document, already decoded, checked key by key into the frozen
types of runner.study.manifest_types.

Everything a manifest may say is checked here -- unknown keys and tables (with a "did you
mean"), types, ranges, task and model names, references between experiments -- and every
problem is one :class:`~runner.errors.InputError` line ``FILE:LINE: key.path: expected ...``
(the line from runner.study.toml_lines).  The strategy table (runner.study.strategies) reads
each strategy's own keys through this parser's checks (its ``read`` callbacks).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from mtl_contract.schema import stats_problem
from runner.errors import InputError
from runner.study.config import HeldoutConfig
from runner.study.keys import (
    DATA_KEYS,
    HELDOUT_DEFAULT_SEEDS,
    HELDOUT_KEYS,
    HELDOUT_TASKS,
    HYPERPARAMETERS,
    SAMPLING_KEYS,
    SETTING_KEYS,
    TOKEN_TARGET_KEYS,
    TRACKING_BACKENDS,
    WARMUP_KEYS,
)
from runner.study.manifest_types import Experiment, Manifest, Study
from runner.study.models import known_aliases
from runner.study.strategies import STRATEGIES, Strategy
from runner.study.toml_lines import TomlLines, path_text
from runner.study.values import Bad, choice, did_you_mean, is_int, known_tasks

STRATEGY_NAMES = tuple(STRATEGIES)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Parser:
    def __init__(self, file: str, text: str):
        self.file = file
        self.lines = TomlLines(text)
        self.tasks = known_tasks()

    def error(self, path: tuple, message: str) -> InputError:
        return InputError(self.file, message, where=path_text(path) or None,
                          line=self.lines.line(path))

    def table(self, value: Any, path: tuple, allowed, required=()) -> dict:
        if not isinstance(value, dict):
            raise self.error(path, f"expected a table, got {type(value).__name__}")
        for key in value:
            if key not in allowed:
                raise self.error(path + (key,), f"unknown key{did_you_mean(key, allowed)}; "
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
                hint = did_you_mean(item, options) if isinstance(item, str) else ""
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
        for key, (check, _) in SETTING_KEYS.items():
            if key in value:
                try:
                    out[key] = check(value[key])
                except Bad as bad:
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
        name = self.string(raw["name"], path + ("name",), NAME_RE)
        results = (self.string(raw["results"], path + ("results",)) if "results" in raw
                   else f"results/{name}")
        seeds = raw["seeds"]
        if not isinstance(seeds, list) or not seeds:
            raise self.error(path + ("seeds",), f"expected a non-empty list of integers, "
                             f"got {seeds!r}")
        for i, s in enumerate(seeds):
            if not is_int(s) or not 0 <= s < 2**32:
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
            if not NAME_RE.match(alias):
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
        name = self.string(raw["name"], path + ("name",), NAME_RE)
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
            raise self.error(path, f"missing key 'strategy' ({' | '.join(STRATEGY_NAMES)})")
        return STRATEGIES[self.choice(raw["strategy"], STRATEGY_NAMES, path + ("strategy",))]

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
            return choice(options)(value)
        except Bad as bad:
            raise self.error(path, str(bad)) from None

    def adapter(self, value: Any, path: tuple):
        from runner.study.adapter import ADAPTER_KEYS, settings_from_table

        self.table(value, path, ADAPTER_KEYS, ("r",))  # unknown keys with a "did you mean"
        try:
            return settings_from_table(value, self.file, where=path_text(path))
        except InputError as err:
            raise InputError(self.file, err.message, where=err.where,
                             line=self.lines.line(path)) from None

    def heldout(self, doc: dict) -> HeldoutConfig | None:
        if "heldout" not in doc:
            return None
        path = ("heldout",)
        raw = self.table(doc["heldout"], path, ("tasks", "seeds") + tuple(HELDOUT_KEYS),
                         ("tasks",))
        out: dict[str, Any] = {"tasks": list(self.str_list(raw["tasks"], path + ("tasks",),
                                                           HELDOUT_TASKS, "held-out task"))}
        seeds = raw.get("seeds", HELDOUT_DEFAULT_SEEDS)
        if not isinstance(seeds, list) or not seeds:
            raise self.error(path + ("seeds",), f"expected a non-empty list of integers, "
                             f"got {seeds!r}")
        for i, s in enumerate(seeds):
            if not is_int(s) or not 0 <= s < 2**32 or s in seeds[:i]:
                raise self.error(path + ("seeds", i), f"expected distinct integers in "
                                 f"[0, 2**32), got {s!r}")
        out["seeds"] = [int(s) for s in seeds]
        for key, (check, default) in HELDOUT_KEYS.items():
            try:
                out[key] = check(raw[key]) if key in raw else default
            except Bad as bad:
                raise self.error(path + (key,), str(bad)) from None
        return HeldoutConfig(**out)

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
                raise self.error((key,), f"unknown table{did_you_mean(key, top)}; expected "
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
        self.references(experiments, by_name)
        self.rq2_links(experiments, by_name, heldout)
        for i, exp in enumerate(experiments):
            cfg = {**defaults, **exp.overrides}
            self.lengths_only_lower(cfg, exp, i)
            if not STRATEGIES[exp.strategy].samples_tasks:
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

    def references(self, experiments: list[Experiment], by_name: dict) -> None:
        """Each reference names a multi_task experiment, whose models and task sets the
        referring experiment takes (in place), once every experiment is parsed."""
        for i, exp in enumerate(experiments):
            if not STRATEGIES[exp.strategy].needs_reference:
                continue
            ref = by_name.get(exp.reference)
            where = ("experiments", i, "reference")
            if ref is None:
                names = [e.name for e in experiments if _referable(e)]
                raise self.error(where, f"no experiment named {exp.reference!r}"
                                 f"{did_you_mean(exp.reference, names)}; expected the name "
                                 f"of a multi_task experiment")
            if not _referable(ref):
                raise self.error(where, f"experiment {ref.name!r} is {ref.strategy}; expected "
                                 f"the name of a multi_task experiment")
            experiments[i] = replace(exp, models=ref.models, task_sets=ref.task_sets)

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
                names = [e.name for e in experiments if _referable(e)]
                if ref is None or not _referable(ref):
                    what = "no experiment named" if ref is None else "not a multi_task experiment:"
                    raise self.error(where, f"{what} {exp.adapter_match!r}"
                                     f"{did_you_mean(exp.adapter_match, names)}; expected the "
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
                if heldout.train_mode == "head_and_adapter" and exp.adapter is None:
                    raise self.error(where, "[heldout] train_mode = \"head_and_adapter\" needs "
                                     "an adapter on this experiment")


def _referable(exp: Experiment) -> bool:
    """An experiment others may refer to (token_controlled's reference, adapter_match)."""
    return STRATEGIES[exp.strategy].referable
