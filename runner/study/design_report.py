"""What the design check reports (runner.study.design computes it): one dataclass per kind of
finding, gathered in :class:`DesignCheck` (``plan --json`` prints it as it is), the warnings
it raises, and the text ``python -m runner plan`` prints.  No computation here beyond
laying the findings out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

# The methodology's expected RQ1 effect (section 14.1: "average improvement +2-5% F1").
EXPECTED_EFFECTS = (2.0, 5.0)
MAX_SEEDS = 200   # "seeds needed" searched up to here
POWER, ALPHA = 0.8, 0.05




@dataclass
class Comparison:
    question: str            # "RQ1" (MT vs ST) | "RQ5" (MT vs TC)
    model: str
    task: str
    systems: list[str]       # experiment names, multi-task first
    seeds: list[int]         # the seeds every system has (the plan gives all the study's)
    paired_test: bool
    mde_points: float | None
    mde_dz: float | None
    sd_points: float
    sd_source: str           # "default" | "measured (n seeds)"


@dataclass
class Family:
    """The comparisons the analysis Holm-corrects together: one question, model and pair of
    experiments, over its tasks (stats.core.analysis: RQ1 and RQ5 families)."""
    question: str
    model: str
    systems: list[str]        # experiment names, multi-task first
    tasks: list[str]
    seeds: int                # matched seeds (the fewest of the family's comparisons)
    sd_points: float
    sd_source: str
    mde_points: float | None          # unadjusted alpha, 80% power
    mde_holm_points: float | None     # alpha / family size (Holm's first step)
    seeds_needed: dict[str, int | None]   # effect in points -> seeds at Holm's first step
    detects: dict[str, bool]              # effect in points -> MDE (Holm) <= effect


@dataclass
class Confound:
    """Optimizer updates per training example of a multi-task system against its single-task
    (or token-controlled) counterpart: unequal examples per step mean unequal updates for the
    same data, a difference that is the recipe's, not transfer's."""
    question: str
    model: str
    systems: list[str]
    examples_per_step: list[int]      # batch_size x grad_accumulation, same order
    updates_ratio: float              # multi-task's updates per example / the other's
    alternative: str | None


@dataclass
class Warmup:
    """A job whose explicit warm-up is 10% or more of its planned optimizer steps."""
    experiment: str
    model: str
    tasks: list[str]
    warmup_steps: int
    planned_steps: int
    jobs: int = 1             # jobs (seeds) alike


@dataclass
class TokenControlled:
    job_id: str
    experiment: str
    model: str
    task: str
    seed: int
    reference: str           # the multi-task system: experiment[task+set]
    parity: str
    target_tokens: int
    target_source: str       # "projected" | "measured"
    tokens_per_epoch: int
    epochs_needed: float
    epoch_cap: int | None    # None: a text control (no cap: it replays its multi-task job)
    feasible: bool
    control: str = "repeat"  # "repeat" (the methodology's) | "text" (runner.ml.mlm)
    mlm_head: str | None = None   # text control: which masked-LM head (models.mlm_head_note)


@dataclass
class Truncation:
    task: str
    max_length: int
    train_truncated: int
    train_examples: int
    test_truncated: int
    test_examples: int
    train_used: int          # examples a job trains on (max_train_examples), of train_examples
    test_used: int           # ... and tests on (max_eval_examples), of test_examples


@dataclass
class DesignCheck:
    comparisons: list[Comparison] = field(default_factory=list)
    families: list[Family] = field(default_factory=list)
    confounds: list[Confound] = field(default_factory=list)
    warmups: list[Warmup] = field(default_factory=list)
    token_controlled: list[TokenControlled] = field(default_factory=list)
    truncation: list[Truncation] = field(default_factory=list)
    total_training_tokens: int | None = None
    lengths_source: str | None = None
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def warnings_of(c: DesignCheck) -> list[str]:
    """The check's warnings: what the study cannot answer, and what to change."""
    warn = []
    testable = [x for x in c.comparisons if x.paired_test]
    if not c.comparisons:
        warn.append("THIS STUDY CANNOT TEST ANYTHING: it has no multi-task vs single-task or "
                    "multi-task vs token-controlled comparison")
    elif not testable:
        warn.append("THIS STUDY CANNOT TEST ANYTHING: no comparison has the 2+ matched seeds a "
                    "paired test needs (list more seeds in [study] seeds; 5 are usual)")
    for f in c.families:
        if f.mde_holm_points is None:
            continue
        missed = [e for e, ok in f.detects.items() if not ok]
        if missed:
            need = ", ".join(f"+{e} points needs {seeds_text(f.seeds_needed[e])}"
                             for e in missed)
            warn.append(f"{f.question} {' vs '.join(f.systems)} ({f.model}, {len(f.tasks)} "
                        f"task(s), {f.seeds} seeds) CANNOT DETECT the methodology's expected "
                        f"+{' or +'.join(missed)} points: its MDE at Holm's first step is "
                        f"{f.mde_holm_points:g} points (sd {f.sd_points:g}); {need}")
    if c.warmups:
        worst = max(c.warmups, key=lambda w: w.warmup_steps / w.planned_steps)
        warn.append(f"{sum(w.jobs for w in c.warmups)} job(s) warm up for 10% or more of their planned "
                    f"optimizer steps with an explicit warmup_steps (worst: {worst.experiment} "
                    f"{worst.model}/{'+'.join(worst.tasks)}: {worst.warmup_steps} of "
                    f"{worst.planned_steps} steps); leave warmup_steps out for the default "
                    "(500, at most 10% of the planned steps) or give warmup_ratio")
    bad = [t for t in c.token_controlled if not t.feasible]
    if bad:
        worst = max(bad, key=lambda t: t.epochs_needed)
        warn.append(f"{len(bad)} token-controlled job(s) cannot reach parity within their epoch "
                    f"cap (worst: {worst.experiment} {worst.model}/{worst.task} needs "
                    f"{worst.epochs_needed:g} epochs, cap {worst.epoch_cap}); where the "
                    "multi-task job's measured tokens confirm it, unreachable_parity = \"skip\" "
                    "(the default) records them as not run, \"run\" stops them at the cap with "
                    "the gap (either way their RQ5 verdict is 'not testable'); parity = "
                    "\"per_task\" is no substitute: it matches only the tokens multi-task spent "
                    "on each task and answers another question (is the gain more than the "
                    "task's own extra data gives?), reported in its own table")
    return warn


# ------------------------------------------------------------------------------ rendering
def _fmt_mde(x: Comparison) -> str:
    if not x.paired_test:
        return "no paired test (fewer than 2 matched seeds)"
    return (f"MDE {x.mde_points:.2f} points (d_z {x.mde_dz:.2f}) at 80% power, "
            f"sd {x.sd_points:g} points ({x.sd_source})")


def seeds_text(n: int | None) -> str:
    return f"{n} seeds" if n is not None else f"more than {MAX_SEEDS} seeds"


def _family_line(f: Family) -> str:
    if f.mde_holm_points is None:
        return (f"    {f.question} {' vs '.join(f.systems)} ({f.model}, {len(f.tasks)} task(s)): "
                f"no paired test ({f.seeds} matched seed(s))")
    needs = ", ".join(f"+{e} points: {seeds_text(n)}" for e, n in f.seeds_needed.items())
    verdict = "; ".join(("can detect" if ok else "CANNOT detect") + f" +{e}"
                        for e, ok in f.detects.items())
    return (f"    {f.question} {' vs '.join(f.systems)} ({f.model}, {len(f.tasks)} task(s), "
            f"{f.seeds} seeds): MDE {f.mde_points:g} points unadjusted, {f.mde_holm_points:g} "
            f"at Holm's first step (alpha {ALPHA:g}/{len(f.tasks)}); seeds needed at Holm's "
            f"first step for {needs}; {verdict} -- sd {f.sd_points:g} points ({f.sd_source})")


def _confound_line(x: Confound) -> str:
    head = (f"    {x.question} {' vs '.join(x.systems)} ({x.model}): "
            f"{x.examples_per_step[0]} vs {x.examples_per_step[1]} examples per optimizer step")
    if x.alternative is None:
        return head + ": equal updates per example"
    return (head + f", so the multi-task side makes {x.updates_ratio:g}x the updates per "
            f"training example: a CONFOUND of the comparison; to remove it: {x.alternative}")


def grouped(items, key):
    groups: dict[Any, list] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return groups.items()


def _subset(t: Truncation) -> str:
    if (t.train_used, t.test_used) == (t.train_examples, t.test_examples):
        return ""
    def share(cut, used, n):
        return f"{cut * used / n:.1f}"
    return (f" in the prepared splits; the jobs' subsets of {t.train_used} / {t.test_used} "
            f"hold about {share(t.train_truncated, t.train_used, t.train_examples)} / "
            f"{share(t.test_truncated, t.test_used, t.test_examples)}")


def render(c: DesignCheck) -> list[str]:
    """The check as text: comparisons that come out alike (same systems, seeds and power) on
    one line, token-controlled jobs one line per experiment, model and task (all seeds)."""
    lines = ["design check"]
    lines += [f"  WARNING: {w}" for w in c.warnings]
    lines.append(f"  comparisons ({len(c.comparisons)}):")
    for (q, systems, seeds, mde), group in grouped(
            c.comparisons, lambda x: (x.question, tuple(x.systems), tuple(x.seeds),
                                      _fmt_mde(x))):
        where = ", ".join(f"{x.model}/{x.task}" for x in group)
        lines.append(f"    {q} {' vs '.join(systems)}: {len(seeds)} matched seed(s) "
                     f"{list(seeds)}; {mde} -- {where}")
    if c.families:
        lines.append("  power per comparison family (80% power, two-sided paired t; Holm's "
                     "first step tests the family's smallest p at alpha / its tasks):")
        lines += [_family_line(f) for f in c.families]
    if c.confounds:
        lines.append("  updates per example, multi-task vs single-task (MT-vs-ST):")
        lines += [_confound_line(x) for x in c.confounds]
    if c.token_controlled:
        ok = sum(t.feasible for t in c.token_controlled)
        text = sum(t.control == "text" for t in c.token_controlled)
        lines.append(f"  token-controlled jobs: {ok} of {len(c.token_controlled)} reach their "
                     "target within the epoch cap" + (f" ({text} text-matched: by construction)"
                                                      if text else "") +
                     " (projected targets assume the multi-task job "
                     "trains all its epochs; early stopping usually ends it sooner):")
        for (exp, model, task, parity, ref), group in grouped(
                c.token_controlled, lambda t: (t.experiment, t.model, t.task, t.parity,
                                               t.reference)):
            need = sorted({t.epochs_needed for t in group})
            span = f"{need[0]:g}" if len(need) == 1 else f"{need[0]:g}-{need[-1]:g}"
            if group[0].control == "text":
                lines.append(f"    {exp} {model}/{task} vs {ref}: TEXT-MATCHED control -- "
                             f"replays the multi-task job ({task} {span} epochs, as there; the "
                             f"other tasks as masked-LM text with {group[0].mlm_head}); "
                             f"parity by construction, no epoch cap; costs what the "
                             f"multi-task job costs ({group[0].target_source}): ok")
                continue
            bad = sum(not t.feasible for t in group)
            mark = "ok" if not bad else f"INFEASIBLE ({bad} of {len(group)} jobs)"
            lines.append(f"    {exp} {model}/{task} vs {ref} parity {parity}: {span} epochs "
                         f"needed (cap {group[0].epoch_cap}; {group[0].target_source}): {mark}")
    if c.truncation:
        lines.append("  truncation at the effective max_length (train / test examples cut):")
        lines += [f"    {t.task} @ {t.max_length}: {t.train_truncated} of {t.train_examples} / "
                  f"{t.test_truncated} of {t.test_examples}" + _subset(t) for t in c.truncation]
    if c.total_training_tokens is not None:
        lines.append(f"  total training tokens (upper bound, all epochs): "
                     f"{c.total_training_tokens:,}; counted with {c.lengths_source} "
                     "(other vocabularies: an estimate)")
    return lines
