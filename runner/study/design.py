"""The design check: can the study the plan describes answer its questions?

Printed by ``python -m runner plan`` (``--json`` for scripts) and by ``run`` before it claims
any work.  Nothing here trains or tokenises; it reads the plan, ``data/TOKEN_LENGTHS.json``
(runner/data/token_lengths.py) and, where some jobs already finished, their ``result.json``:

* per comparison the analysis will make -- RQ1 multi-task vs single-task and RQ5 multi-task vs
  token-controlled, per model and task -- the seeds all its systems share, whether a paired
  test is possible (two or more), and the minimum detectable effect at 80% power
  (``stats.core.power.mde_dz``, statsmodels' ``TTestPower`` definition) for a seed-to-seed standard deviation of the paired
  difference: ``DEFAULT_SD_POINTS`` unless finished jobs of that comparison give one;
* per comparison family (what the analysis Holm-corrects together: one question, model and
  pair of experiments over its tasks) the MDE in points unadjusted and at Holm's first step
  (alpha / the family's tasks), from its measured sd or the default (source named), the seeds
  the methodology's expected effects (+2 and +5 points) need, and whether it can detect them;
* per family the optimizer updates per training example of the multi-task side against the
  other's (a confound where they differ), with the setting that removes the difference;
* jobs whose explicit warm-up is 10% or more of their planned optimizer steps;
* per token-controlled job the epochs it needs to reach its token target, projected from the
  token counts of the prepared data and the multi-task job's planned budget (or its recorded
  token count once it has finished), against the job's epoch cap;
* per task the examples its effective ``max_length`` truncates, and the study's total
  training tokens (an upper bound: early stopping ends most jobs sooner).

Token counts come from the demo encoder's tokenizer (TOKEN_LENGTHS.json says so); other
vocabularies split differently, so every token figure here is an estimate.
"""

from __future__ import annotations

import functools
import math
import os
from collections import defaultdict
from pathlib import Path

from mtl_contract.files import read_json_bounded
from runner.data import token_lengths
from runner.study.design_report import (  # noqa: F401  (the check's types, re-exported)
    ALPHA,
    EXPECTED_EFFECTS,
    MAX_SEEDS,
    POWER,
    Comparison,
    Confound,
    DesignCheck,
    Family,
    TokenControlled,
    Truncation,
    Warmup,
    grouped,
    render,
    warnings_of,
)
from runner.study.keys import HYPERPARAMETERS
from runner.study.plan import Job, Plan, planned_steps
from runner.study.strategies import STRATEGIES
from stats.core.power import mde_dz  # scipy.special only: plan stays fast

# Seed-to-seed standard deviation of a paired difference (two systems, same seed), in points
# of the primary metric, assumed where no finished jobs measure it: sqrt(2) x the pooled
# seed-to-seed sd of one system measured by the engine as it trains now (hf-groups batch order,
# uniform-mask dropout) in the committed seed-spread runs below -- BC2GM 15 seeds (sd 0.93)
# and GAD 10 seeds (sd 1.43), pooled 1.15 points (default_sd_from_spread, which
# tests/runner/study/test_design.py recomputes from the files).
SEED_SPREAD_FILES = ("benchmarks/evidence/seed_spread_bc2gm_uniform_mask.json",
                     "benchmarks/evidence/seed_spread_gad_uniform_mask.json")
DEFAULT_SD_POINTS = 1.62
DEFAULT_SD_SOURCE = ("default: sqrt(2) x the engine's pooled seed sd (1.15 points) in "
                     + " and ".join(f.rsplit("/", 1)[1] for f in SEED_SPREAD_FILES))
# The methodology's cap on a token-controlled run (section 5.3: "num_epochs": 20), the
# manifest's default for token_controlled_max_epochs.
DEFAULT_TC_EPOCH_CAP = HYPERPARAMETERS["token_controlled_max_epochs"][1]
# ------------------------------------------------------------------------- token arithmetic
class Lengths:
    """Token counts of the prepared data at any truncation length, from the histograms."""

    def __init__(self, hist: dict[str, dict[str, dict[int, int]]]):
        self.hist = hist
        self._cache: dict[tuple, tuple[int, int, int]] = {}
        self.projections: dict[tuple, dict[str, float]] = {}  # see projected_tokens

    def has(self, task: str) -> bool:
        return task in self.hist

    def stats(self, task: str, split: str, max_length: int) -> tuple[int, int, int]:
        """(examples, real tokens after truncation, examples truncated)."""
        key = (task, split, max_length)
        if key not in self._cache:
            h = self.hist[task][split]
            self._cache[key] = (sum(h.values()),
                                sum(min(n, max_length) * c for n, c in h.items()),
                                sum(c for n, c in h.items() if n > max_length))
        return self._cache[key]

    def epoch(self, job: Job, task: str) -> tuple[int, float]:
        """(training examples the job uses, mean real tokens per example) of one task."""
        n, tokens, _ = self.stats(task, "train", job.settings.max_length_for(task))
        cap = (job.settings.max_train_examples or {}).get(task)
        used = min(n, int(cap)) if cap else n
        return used, tokens / n


def _probabilities(job: Job, sizes: dict[str, int]) -> dict[str, float]:
    from runner.study.sampling import task_probabilities  # numpy only

    cfg = job.settings
    return task_probabilities(sizes, cfg.sampling, cfg.temperature, cfg.examples_cap)


# The config keys a job's planned training tokens depend on (with its tasks): jobs that agree
# on them -- every seed of one experiment -- share one projection.
BUDGET_KEYS = ("batch_size", "grad_accumulation", "max_epochs", "max_steps", "max_length",
               "max_length_per_task", "max_train_examples", "sampling", "temperature",
               "examples_cap")


def projected_tokens(job: Job, lengths: Lengths) -> dict[str, float]:
    """Real training tokens per task if the job runs its whole planned budget (all epochs, or
    max_steps), as the engine schedules it: micro-batches = epochs x sum of the tasks' batches
    per epoch, each drawn from task t with the sampler's probability p_t."""
    key = (job.tasks, tuple(_hashable(job.config.get(k)) for k in BUDGET_KEYS))
    if key not in lengths.projections:
        lengths.projections[key] = _projected_tokens(job, lengths)
    return lengths.projections[key]


def _hashable(value):
    return tuple(sorted(value.items())) if isinstance(value, dict) else value


def _projected_tokens(job: Job, lengths: Lengths) -> dict[str, float]:
    cfg = job.settings
    batch = cfg.batch_size
    per_task = {t: lengths.epoch(job, t) for t in job.tasks}
    sizes = {t: n for t, (n, _) in per_task.items()}
    if cfg.max_steps:
        micro = cfg.max_steps * cfg.grad_accumulation
    else:
        micro = cfg.max_epochs * sum(math.ceil(n / batch) for n in sizes.values())
    probs = _probabilities(job, sizes) if len(job.tasks) > 1 else {job.tasks[0]: 1.0}
    # a task's batches hold its n examples in ceil(n / batch) batches per epoch: n / that
    # many examples each on average, never more than the task has (batch 65,536 over 1,000
    # examples is one batch of 1,000, not 65,536, which once projected "needs 8,753 epochs")
    per_batch = {t: n / max(1, math.ceil(n / batch)) for t, n in sizes.items()}
    return {t: micro * probs[t] * per_batch[t] * mean for t, (_, mean) in per_task.items()}


# ----------------------------------------------------------------------------- the checks
class Results:
    """Finished jobs' result.json, each read at most once (a comparison and a token-controlled
    projection may both ask); absent or unreadable reads as None."""

    def __init__(self, results_dir: Path | None):
        self.dir = results_dir
        self.root = os.fspath(results_dir) if results_dir is not None else None
        self._docs: dict[str, dict | None] = {}
        self._present = None

    def get(self, job_id: str) -> dict | None:
        if self.dir is None:
            return None
        if self._present is None:  # one listing instead of a failed open per unfinished job
            try:
                self._present = set(os.listdir(self.dir))
            except OSError:
                self._present = set()
        if job_id not in self._present:
            return None
        if job_id not in self._docs:
            try:  # plain string paths: pathlib costs more than the read at 10,000 jobs
                # bounded: a result.json linked to /dev/zero is not read forever
                self._docs[job_id] = read_json_bounded(f"{self.root}/{job_id}/result.json")
            except (OSError, ValueError):
                self._docs[job_id] = None
        return self._docs[job_id]


def _score(result: dict | None, task: str) -> float | None:
    if not result:
        return None
    entry = (result.get("per_task") or {}).get(task) or {}
    value = (entry.get("metrics") or {}).get(entry.get("primary_metric"))
    return None if value is None else 100.0 * float(value)


def _sd_of_differences(results: Results, task, a: dict[int, Job], b: dict[int, Job], seeds):
    diffs = []
    for s in seeds:
        x = _score(results.get(a[s].job_id), task)
        y = _score(results.get(b[s].job_id), task)
        if x is not None and y is not None:
            diffs.append(x - y)
    if len(diffs) < 3:  # two differences give a one-degree-of-freedom SD: not worth trusting
        return None, 0
    mean = sum(diffs) / len(diffs)
    return math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)), len(diffs)


def _comparison(question, model, task, systems: dict[str, dict[int, Job]],
                results: Results, sd_points) -> Comparison:
    shared = sorted(set.intersection(*(set(by_seed) for by_seed in systems.values())))
    names = list(systems)
    sd, n_measured = (None, 0) if sd_points is not None else _sd_of_differences(
        results, task, systems[names[0]], systems[names[1]], shared)
    source = f"measured ({n_measured} seeds)" if sd is not None else (
        "given" if sd_points is not None else "default")
    sd = sd if sd is not None else (sd_points if sd_points is not None else DEFAULT_SD_POINTS)
    d_z = mde_dz(len(shared), ALPHA, POWER) if len(shared) >= 2 else None
    return Comparison(question, model, task, names, shared, d_z is not None,
                      None if d_z is None else round(d_z * sd, 4),
                      None if d_z is None else round(d_z, 4), round(sd, 4), source)


def _label(job: Job) -> str:
    """A multi-task system: its experiment and task set (one experiment may list several)."""
    return f"{job.experiment}[{'+'.join(job.tasks)}]"


def _by_seed(jobs) -> dict[int, Job]:
    return {j.seed: j for j in jobs}


def comparisons(plan: Plan, results: Results, sd_points: float | None
                ) -> list[Comparison]:
    """RQ1 (each multi-task system vs each full fine-tuning single-task experiment of the same
    model and task) and RQ5 (each token-controlled experiment vs its multi-task system)."""
    groups: dict[tuple, list[Job]] = defaultdict(list)
    for job in plan.jobs:
        groups[(job.experiment, job.model, job.tasks)].append(job)
    mt = {k: v for k, v in groups.items() if STRATEGIES[v[0].strategy].samples_tasks}
    st = {k: v for k, v in groups.items() if STRATEGIES[v[0].strategy].baseline
          and not v[0].settings.adapter}
    out = []
    for (mt_exp, model, tasks), mt_jobs in mt.items():
        label = _label(mt_jobs[0])
        adapter = mt_jobs[0].settings.adapter
        for (st_exp, st_model, (task,)), st_jobs in st.items():
            if st_model == model and task in tasks and not adapter:
                out.append(_comparison("RQ1", model, task, {label: _by_seed(mt_jobs),
                                       st_exp: _by_seed(st_jobs)}, results, sd_points))
    ids = plan.by_id()
    for (tc_exp, model, tasks), tc_jobs in groups.items():
        if not STRATEGIES[tc_jobs[0].strategy].token_target:
            continue
        (task,) = tasks
        ref_jobs = [ids[j.depends_on[0]] for j in tc_jobs if j.depends_on]
        by_set = defaultdict(list)
        for ref, tc in zip(ref_jobs, tc_jobs):
            by_set[ref.tasks].append((ref, tc))
        for tasks, pairs in by_set.items():
            label = _label(pairs[0][0])
            out.append(_comparison("RQ5", model, task,
                                   {label: _by_seed(r for r, _ in pairs),
                                    tc_exp: _by_seed(t for _, t in pairs)},
                                   results, sd_points))
    return out


def default_sd_from_spread(docs) -> float:
    """sqrt(2) x the pooled (over files, by degrees of freedom) seed-to-seed sd, in points, of
    the ``engine`` runs in seed-spread documents (benchmarks/seed_spread.py's format): the sd
    of a paired difference of two independent systems."""
    ss = df = 0.0
    for doc in docs:
        for systems in doc["runs"].values():
            scores = [100.0 * float(r["score"]) for r in systems["engine"].values()]
            mean = sum(scores) / len(scores)
            ss += sum((x - mean) ** 2 for x in scores)
            df += len(scores) - 1
    return math.sqrt(2.0 * ss / df)


def _family_key(c: Comparison) -> tuple:
    return (c.question, c.model, tuple(name.split("[")[0] for name in c.systems))


def seeds_needed(effect: float, sd: float, alpha: float) -> int | None:
    """The fewest matched seeds whose MDE (80% power, ``alpha``) is at most ``effect`` points;
    None beyond MAX_SEEDS."""
    lo, hi = 2, MAX_SEEDS
    if mde_dz(hi, alpha, POWER) * sd > effect:
        return None
    while lo < hi:   # the MDE falls with n: bisect
        mid = (lo + hi) // 2
        if mde_dz(mid, alpha, POWER) * sd <= effect:
            hi = mid
        else:
            lo = mid + 1
    return lo


def families(comps: list[Comparison]) -> list[Family]:
    """Per Holm family: the MDE unadjusted and at Holm's first step (alpha / family size), from
    the family's measured sd (pooled over its comparisons that measured one) or the default,
    and the seeds the expected effects need."""
    out = []
    for (question, model, systems), group in grouped(comps, _family_key):
        tasks = sorted({c.task for c in group})
        n = min(len(c.seeds) for c in group)
        measured = [c for c in group if c.sd_source.startswith("measured")]
        if measured:
            sd = math.sqrt(sum(c.sd_points ** 2 for c in measured) / len(measured))
            source = (f"measured: {len(measured)} of {len(group)} comparison(s) of this "
                      "family's finished jobs")
        else:
            sd, source = group[0].sd_points, group[0].sd_source
            if source == "default":
                source = DEFAULT_SD_SOURCE
        alpha_holm = ALPHA / len(tasks)
        mde = round(mde_dz(n, ALPHA, POWER) * sd, 2) if n >= 2 else None
        holm = round(mde_dz(n, alpha_holm, POWER) * sd, 2) if n >= 2 else None
        out.append(Family(question, model, list(systems), tasks, n, round(sd, 3), source,
                          mde, holm,
                          {f"{e:g}": seeds_needed(e, sd, alpha_holm) for e in EXPECTED_EFFECTS},
                          {f"{e:g}": holm is not None and holm <= e
                           for e in EXPECTED_EFFECTS}))
    return out


def _examples_per_step(job: Job) -> int:
    return job.settings.batch_size * job.settings.grad_accumulation


def confounds(plan: Plan, comps: list[Comparison]) -> list[Confound]:
    """Per family, the multi-task side's optimizer updates per training example against the
    other side's, and the setting that equalises them where they differ."""
    jobs: dict[tuple, Job] = {}
    for job in plan.jobs:
        jobs.setdefault((job.experiment, job.model), job)
    out = []
    for (question, model, systems), _ in grouped(comps, _family_key):
        mt, other = jobs[(systems[0], model)], jobs[(systems[1], model)]
        sizes = [_examples_per_step(mt), _examples_per_step(other)]
        alternative = None
        if sizes[0] != sizes[1]:
            batch = mt.settings.batch_size
            accumulation = sizes[1] // batch
            if accumulation * batch == sizes[1]:
                alternative = (f"grad_accumulation = {accumulation} in {systems[0]} (with its "
                               f"batch_size = {batch}: {sizes[1]} examples per step)")
            else:
                alternative = (f"batch_size x grad_accumulation = {sizes[1]} in {systems[0]}")
        out.append(Confound(question, model, list(systems), sizes,
                            round(sizes[1] / sizes[0], 4), alternative))
    return out


def planned_job_steps(job: Job, lengths: Lengths, tc: dict[str, TokenControlled]
                      ) -> int | None:
    """A job's planned optimizer steps: its budget over the prepared training splits (a
    token-controlled job: the epochs its projected target needs, at most its cap)."""
    cfg, tasks = job.settings, job.tasks
    if job.job_id in tc and tc[job.job_id].epoch_cap is None:
        # a text control replays its multi-task job's batches: that job's planned steps
        tasks = tuple(cfg.control["tasks"])
    elif job.job_id in tc:
        t = tc[job.job_id]
        n, _ = lengths.epoch(job, t.task)
        micro = math.ceil(min(t.epochs_needed, t.epoch_cap) * math.ceil(n / cfg.batch_size))
        return max(1, math.ceil(micro / cfg.grad_accumulation))
    if not cfg.max_steps and not all(lengths.has(t) for t in tasks):
        return None
    return planned_steps(cfg, False, tasks,
                         lambda t: lengths.stats(t, "train", cfg.max_length_for(t))[0])


def explicit_warmups(plan: Plan, lengths: Lengths, tc: list[TokenControlled]) -> list[Warmup]:
    """Jobs whose manifest-given warmup_steps is 10% or more of their planned steps (the
    default's cap never lets that happen; a warmup_ratio says its own share)."""
    by_id = {t.job_id: t for t in tc}
    out: dict[tuple, Warmup] = {}
    for job in plan.jobs:
        cfg = job.config
        if "warmup_cap" in cfg or "warmup_ratio" in cfg or "warmup_steps" not in cfg:
            continue
        warmup = job.settings.warmup_steps
        steps = planned_job_steps(job, lengths, by_id)
        if not warmup or steps is None or warmup < 0.1 * steps:
            continue
        key = (job.experiment, job.model, job.tasks, warmup, steps)
        if key in out:
            out[key].jobs += 1
        else:
            out[key] = Warmup(job.experiment, job.model, list(job.tasks), warmup, steps)
    return list(out.values())


def token_controlled(plan: Plan, lengths: Lengths, results: Results
                     ) -> list[TokenControlled]:
    ids = plan.by_id()
    out = []
    for job in plan.jobs:
        if not STRATEGIES[job.strategy].token_target or not job.depends_on:
            continue
        (task,) = job.tasks
        ref = ids[job.depends_on[0]]
        if not all(lengths.has(t) for t in ref.tasks):
            continue
        measured = results.get(ref.job_id)
        if measured and measured.get("token_count") is not None:
            per_task, source = measured.get("tokens_per_task") or {}, "measured"
            at_best = job.settings.parity_target == "best"
            if at_best and measured.get("tokens_at_best"):
                per_task = measured.get("tokens_per_task_at_best") or per_task
            total = (measured.get("tokens_at_best") if at_best else None) \
                or measured["token_count"]
        else:
            per_task, source = projected_tokens(ref, lengths), "projected"
            total = sum(per_task.values())
        target = per_task.get(task, 0) if job.parity == "per_task" else total
        n, mean = lengths.epoch(job, task)
        per_epoch = n * mean
        if is_text_control(job):
            # every task's tokens match by construction; its own task is seen as often as in
            # the multi-task job, so there is no cap to reach
            epochs = per_task.get(task, 0) / per_epoch if per_epoch else math.inf
            out.append(TokenControlled(job.job_id, job.experiment, job.model, task, job.seed,
                                       _label(ref), job.parity or "total", int(target), source,
                                       int(per_epoch), round(epochs, 2), None, True, "text",
                                       _mlm_head(job.model_name)))
            continue
        cap = job.settings.token_controlled_max_epochs
        epochs = target / per_epoch if per_epoch else math.inf
        out.append(TokenControlled(job.job_id, job.experiment, job.model, task, job.seed,
                                   _label(ref), job.parity or "total", int(target), source, int(per_epoch),
                                   round(epochs, 2), cap, epochs <= cap))
    return out


def is_text_control(job: Job) -> bool:
    """A token-controlled job with the text-matched control (config.control)."""
    return (job.settings.control or {}).get("kind") == "text"


@functools.cache
def _mlm_head(model_name: str) -> str:
    from runner.study.models import mlm_head_note
    return mlm_head_note(model_name)


def truncation(plan: Plan, lengths: Lengths) -> list[Truncation]:
    """Per task and effective length, the examples cut in the prepared splits, and the share of
    them a job sees where ``max_train_examples`` / ``max_eval_examples`` take a subset."""
    seen = {}
    for job in plan.jobs:
        for task in job.tasks:
            length = job.settings.max_length_for(task)
            train_cap = (job.settings.max_train_examples or {}).get(task)
            key = (task, length, train_cap, job.settings.max_eval_examples)
            if key not in seen and lengths.has(task):
                n_train, _, cut_train = lengths.stats(task, "train", length)
                n_test, _, cut_test = lengths.stats(task, "test", length)
                seen[key] = Truncation(task, length, cut_train, n_train, cut_test, n_test,
                                       min(n_train, train_cap or n_train),
                                       min(n_test, key[3] or n_test))
    return sorted(seen.values(), key=lambda t: (t.task, t.max_length, t.train_used))


def total_tokens(plan: Plan, lengths: Lengths, tc: list[TokenControlled]) -> int:
    targets = {t.job_id: t.target_tokens for t in tc}
    total = 0.0
    for job in plan.jobs:
        if job.job_id in targets:
            total += targets[job.job_id]
        elif all(lengths.has(t) for t in job.tasks):
            total += sum(projected_tokens(job, lengths).values())
    return int(total)


def check(plan: Plan, results_dir: str | Path | None = None,
          sd_points: float | None = None) -> DesignCheck:
    results = Results(Path(results_dir) if results_dir is not None else None)
    comps = comparisons(plan, results, sd_points)
    out = DesignCheck(comparisons=comps, families=families(comps),
                      confounds=confounds(plan, comps))
    hist = token_lengths.read(plan.data_dir)
    if hist is None:
        out.warnings.append(f"no {plan.data_dir / token_lengths.FILENAME}: token projections, "
                            "truncation counts and total tokens not estimated (build it with "
                            f"`python -m runner token-lengths {plan.data_dir}`)")
    else:
        lengths = Lengths(hist)
        out.lengths_source = token_lengths.TOKENIZER
        out.token_controlled = token_controlled(plan, lengths, results)
        out.truncation = truncation(plan, lengths)
        out.total_training_tokens = total_tokens(plan, lengths, out.token_controlled)
        out.warmups = explicit_warmups(plan, lengths, out.token_controlled)
    out.warnings = warnings_of(out) + out.warnings
    return out
