"""RQ5's statistics: multi-task against token-controlled systems, with the single-task system
beside them, and the verdict of each task.

A matched unit is the same model, task and seed under multi_task and token_controlled: the
token-controlled job's ``parity.reference_job`` names its multi-task job. A token-controlled
system is its experiment (plus its reference's task set where the multi-task experiment has
several), so RQ5 makes one comparison per (model, multi-task system, token-controlled
system), over the seeds its ST, MT and TC systems all ran.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from mtl_contract.schema import MT, ST, TC
from stats.core import controls, significance
from stats.core.parity import TARGETS, epochs_text, pair_parity, parity_summary
from stats.core.study import Study, seed_list
from stats.core.systems import apply_holm, compare_pairs, na_row, system_summary
from stats.read.results import JobResult, token_efficiency

Pairs = dict[tuple[str, str, str, str], dict[int, tuple[JobResult, JobResult]]]


def _tc_pairs(study: Study) -> tuple[Pairs, list[dict[str, Any]]]:
    """(model, MT system, TC system, task) -> seed -> (mt_job, tc_job), and n/a rows for
    token-controlled jobs whose reference is not usable. Keyed by the TC system too, so two
    token-controlled experiments on one multi-task job stay two comparisons."""
    matched: Pairs = defaultdict(dict)
    orphans: list[dict[str, Any]] = []
    for tc in sorted((j for j in study.jobs if j.strategy == TC), key=lambda j: j.job_id):
        ref = tc.parity["reference_job"]
        mt = study.by_id.get(ref)
        for task in tc.tasks:
            if mt is None or mt.strategy != MT:
                orphans.append(na_row(tc.model, task, f"missing counterpart: token-controlled "
                                       f"job {tc.job_id} references {ref}, which is not a "
                                       "multi-task job among the results",
                                       multi_task_experiment=None, verdict=significance.NOT_TESTABLE))
                continue
            if task not in mt.per_task:
                orphans.append(na_row(tc.model, task, f"reference job {ref} did not train "
                                       f"{task}", multi_task_experiment=study.system(mt),
                                       verdict=significance.NOT_TESTABLE))
                continue
            key = (mt.model, study.system(mt), study.system(tc), task)
            if mt.seed in matched[key]:
                study.note(f"{key}: two jobs of one token-controlled system reference "
                           f"{mt.job_id}; using {matched[key][mt.seed][1].job_id}")
                continue
            matched[key][mt.seed] = (mt, tc)
    return matched, orphans


def _first_st(study: Study, model: str, task: str) -> str | None:
    """The model's first single-task experiment if it ran the task (Table RQ5's ST)."""
    st_exps = study.experiments(model, ST)
    if st_exps and task in study.tasks_of(model, ST, st_exps[0]):
        return st_exps[0]
    return None


def rq5_groups(study: Study, multitask: list[dict[str, Any]],
               systems: dict[tuple[str, str, str, str], dict[str, Any]] | None = None,
               bootstrap: bool = True) -> list[dict[str, Any]]:
    """RQ5 families: one per (model, multi-task system, token-controlled system) — each
    token-controlled experiment is its own comparison — with one row per task of the
    multi-task system: ST / MT / TC over the seeds all three share, token parity per matched
    pair (per tokenizer), MT − TC and MT − ST paired tests Holm-adjusted across the
    family's tasks, the verdict (:func:`stats.core.significance.verdict_rule`) and a sensitivity entry."""
    matched, orphans = _tc_pairs(study)
    rq1: dict[tuple[str, str, str], dict[str, Any]] = {}
    for f in multitask:
        if f["multi_task_experiment"] is not None:
            for r in f["rows"]:
                rq1.setdefault((f["model"], f["multi_task_experiment"], r["task"]), r)
    families = []
    for model in study.models():
        for e_m in study.experiments(model, MT):
            tcs = sorted({k[2] for k in matched if k[:2] == (model, e_m)})
            for e_t in tcs or [None]:
                families.append(_rq5_family(study, model, e_m, e_t, matched, rq1,
                                            systems or {}, bootstrap))
    for fam in families:
        _add_sensitivity(study, fam, families)
    if orphans:
        families.append({"model": None, "multi_task_experiment": None,
                         "token_controlled_experiment": None, "parity_mode": None,
                         "parity_target": None, "rows": orphans})
    return families


def _one(values: set[Any]) -> Any:
    """The single value of a set, "mixed" for several, None for none."""
    return next(iter(values)) if len(values) == 1 else ("mixed" if values else None)


def _rq5_family(study: Study, model: str, e_m: str, e_t: str | None, matched: Pairs,
                rq1: dict[tuple[str, str, str], dict[str, Any]],
                systems: dict[tuple[str, str, str, str], dict[str, Any]],
                bootstrap: bool) -> dict[str, Any]:
    opt = study.options
    rows = []
    for task in study.tasks_of(model, MT, e_m):
        pairs = matched.get((model, e_m, e_t, task), {}) if e_t else {}
        if pairs:
            rows.append(_rq5_row(study, model, e_m, e_t, task, pairs, systems, bootstrap))
        else:
            rows.append(_rq5_na_row(study, model, e_m, e_t, task, rq1, systems, bootstrap))
    compared = [r for r in rows if "parity_summary" in r]
    apply_holm(rows, opt.alpha)  # MT − TC
    apply_holm([r["mt_minus_st"] for r in compared if r["mt_minus_st"]], opt.alpha)
    # the control this token-controlled system ran (one per comparison, never pooled)
    control = _one({controls.control_of(tc.config) for key, pairs in matched.items()
                    if key[:3] == (model, e_m, e_t) for _, tc in pairs.values()})
    for row in compared:
        ps, st = row["parity_summary"], row["mt_minus_st"] or {}
        row["verdict"], row["verdict_reason"] = significance.rq5_verdict(
            ps["holds"], ps["detail"], row["mean_diff"], row["p_holm"],
            st.get("mean_diff"), st.get("p_holm"), opt.alpha, row["equivalence"],
            row["parity_mode"])
        row["verdict"] = controls.verdict_words(row["verdict"], control)
    for row in compared:   # some seeds ran, others could not reach parity
        unreachable = _unreachable_text(study, model, e_m, e_t, row["task"])
        if unreachable:
            row["verdict"] = significance.NOT_TESTABLE
            row["verdict_reason"] = f"{unreachable}; the seeds that ran: {row['verdict_reason']}"
    pairs = [p for r in compared for p in r["parity"]]
    return {"model": model, "multi_task_experiment": e_m, "token_controlled_experiment": e_t,
            "control": control,
            "parity_mode": _one({p["mode"] for p in pairs}),
            "parity_target": _one({p["target"] for p in pairs} - {None}),
            "rows": rows}


def _shared_seeds(pairs: dict[int, tuple[JobResult, JobResult]],
                  st_runs: dict[int, JobResult], names: tuple[str, str, str | None],
                  runs: tuple[dict[int, JobResult], dict[int, JobResult]]):
    """Seeds every system of the comparison ran (the ST side only when it shares one), and
    per system the seeds it ran that the comparison leaves out."""
    seeds = sorted(pairs)
    if st_runs and any(s in st_runs for s in seeds):
        seeds = [s for s in seeds if s in st_runs]
    used = set(seeds)
    dropped = {name: sorted(set(r) - used) for name, r in
               zip(names, (runs[0], runs[1], st_runs)) if name and set(r) - used}
    return seeds, dropped


def _rq5_row(study: Study, model: str, e_m: str, e_t: str, task: str,
             pairs: dict[int, tuple[JobResult, JobResult]],
             systems: dict[tuple[str, str, str, str], dict[str, Any]],
             bootstrap: bool) -> dict[str, Any]:
    opt = study.options
    st_exp = _first_st(study, model, task)
    st_runs = study.runs(model, ST, st_exp, task) if st_exp else {}
    seeds, dropped = _shared_seeds(
        pairs, st_runs, (e_m, e_t, st_exp),
        (study.runs(model, MT, e_m, task), study.runs(model, TC, e_t, task)))
    row = compare_pairs(study, task, [(s, pairs[s][0], pairs[s][1]) for s in seeds],
                        e_m, e_t, bootstrap)
    st_pairs = [(s, pairs[s][0], st_runs[s]) for s in seeds if s in st_runs]
    mt_st = compare_pairs(study, task, st_pairs, e_m, st_exp, False) if st_pairs else None
    parity = [pair_parity(task, s, *pairs[s], opt.parity_threshold) for s in seeds]
    st_key = (model, ST, st_exp, task)
    mode = _one({p["mode"] for p in parity})
    # the MT tokens TC was matched to (per-task parity: those MT spent on this task; target
    # "best": up to its best checkpoint): the token column and MT's efficiency both use them
    mt_tokens = float(np.mean([p["mt_tokens"] or 0 for p in parity]))
    row.update({
        "model": model, "multi_task_experiment": e_m, "token_controlled_experiment": e_t,
        "token_controlled_experiments": sorted({pairs[s][1].experiment for s in seeds}),
        "single_task_experiment": st_exp, "seeds_dropped": dropped,
        "parity": parity, "parity_summary": parity_summary(parity, opt.parity_threshold),
        "single_task": (systems.get(st_key) or system_summary(study, *st_key, bootstrap))
        if st_exp else None,
        "mt_minus_st": mt_st,
        "st_mean": float(np.mean(mt_st["values_b"])) if mt_st else None,
        "mt_mean": float(np.mean(row["values_a"])), "tc_mean": float(np.mean(row["values_b"])),
        "parity_mode": mode,
        "equivalence": significance.equivalence(row["differences"], opt.equivalence_margin,
                                         opt.alpha),
        "mt_tokens_mean": mt_tokens,
        "tc_tokens_mean": float(np.mean([p["tc_tokens"] for p in parity])),
        # primary metric per million training tokens (methodology 7.3), of the seed means
        "mt_efficiency": token_efficiency(float(np.mean(row["values_a"])), round(mt_tokens)),
        "tc_efficiency": token_efficiency(
            float(np.mean(row["values_b"])),
            round(np.mean([pairs[s][1].token_count for s in seeds]))),
    })
    return row


def _rq5_na_row(study: Study, model: str, e_m: str, e_t: str | None, task: str,
                rq1: dict[tuple[str, str, str], dict[str, Any]],
                systems: dict[tuple[str, str, str, str], dict[str, Any]],
                bootstrap: bool) -> dict[str, Any]:
    """A task of the multi-task system that this token-controlled system did not pair:
    ST and MT are shown over the seeds both ran (RQ1's row), else MT over its own."""
    st_exp = _first_st(study, model, task)
    st_key = (model, ST, st_exp, task)
    st_sys = (systems.get(st_key) or system_summary(study, *st_key, bootstrap)) if st_exp else None
    mt_sys = systems.get((model, MT, e_m, task))
    st_row = rq1.get((model, e_m, task))
    if e_t is None:
        reason = ("only multi_task ran: no token-controlled job references this experiment "
                  "for this task")
    else:
        reason = (f"no job of token-controlled system {e_t} references {e_m} for {task} "
                  "(not planned, failed or not finished)")
    unreachable = _unreachable_text(study, model, e_m, e_t, task)
    shared = bool(st_row and st_row.get("n"))
    return na_row(model, task, unreachable or reason, multi_task_experiment=e_m,
                   token_controlled_experiment=e_t, verdict=significance.NOT_TESTABLE,
                   single_task=st_sys, multi_task=mt_sys, mt_minus_st=st_row,
                   seeds=st_row["seeds"] if shared else (mt_sys or {}).get("seeds", []),
                   st_mean=float(np.mean(st_row["values_b"])) if shared else None,
                   mt_mean=float(np.mean(st_row["values_a"])) if shared
                   else (mt_sys or {}).get("mean"))


def _unreachable_text(study: Study, model: str, e_m: str, e_t: str | None,
                      task: str) -> str | None:
    """Why the token-controlled side of (model, e_m, e_t, task) was not run, when the runner
    recorded it so (``unreachable_parity = "skip"``), with the epochs it would need; None
    when it did not."""
    found = []
    for nr in study.not_run:
        ref = study.by_id.get(nr.reference_job)
        if (nr.model == model and nr.task == task and ref is not None
                and study.system(ref) == e_m
                and (e_t is None or e_t.split("[")[0] == nr.experiment)):
            found.append(nr)
    if not found:
        return None
    worst = max(found, key=lambda nr: nr.epochs_needed or 0.0)
    seeds = seed_list(sorted({nr.seed for nr in found}))
    return (f"{significance.NOT_TESTABLE}: the token-controlled job would need "
            f"{epochs_text(worst.epochs_needed)} epochs of {task}, above its cap of "
            f"{worst.epoch_cap if worst.epoch_cap is not None else '?'} (not run; seeds "
            f"{seeds}, seed {worst.seed} shown)")


def _best_weights_alternative(study: Study, fam: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per task, MT − TC and the verdict with the TC side at its best-validation weights
    (``per_task[task].best_weights``), Holm across the family's tasks as in the primary
    analysis. Parity and MT − ST stay as they are: the TC job trained on the same tokens."""
    out: dict[str, dict[str, Any]] = {}
    for row in (r for r in fam["rows"] if "parity_summary" in r):
        best = [study.by_id[j].per_task[row["task"]].best_weights for j in row["job_ids_b"]]
        missing = [s for s, b in zip(row["seeds"], best) if b is None]
        if missing:
            out[row["task"]] = {"verdict": None, "reason": "best-validation metrics not "
                                f"recorded (seeds {seed_list(missing)})"}
            continue
        values = [b[row["primary_metric"]] for b in best]
        t = significance.paired_t(row["values_a"], values)
        out[row["task"]] = {"values_b": values, "mean_diff": t["mean_diff"], "paired_t": t,
                            "equivalence": significance.equivalence(
                                [a - b for a, b in zip(row["values_a"], values)],
                                study.options.equivalence_margin, study.options.alpha),
                            "reason": t["reason"]}
    entries = [e for e in out.values() if "paired_t" in e]
    apply_holm(entries, study.options.alpha)
    for row in (r for r in fam["rows"] if r["task"] in out and "paired_t" in out[r["task"]]):
        e, st = out[row["task"]], row["mt_minus_st"] or {}
        e["verdict"], e["verdict_reason"] = significance.rq5_verdict(
            row["parity_summary"]["holds"], row["parity_summary"]["detail"], e["mean_diff"],
            e["p_holm"], st.get("mean_diff"), st.get("p_holm"), study.options.alpha,
            e["equivalence"], row["parity_mode"])
        e["verdict"] = controls.verdict_words(e["verdict"], fam.get("control"))
    return out


def _other_targets(fam: dict[str, Any], families: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Token-controlled systems on the same multi-task system, model, parity mode and control
    that aimed at the other target ("total" vs "best")."""
    if fam["parity_target"] not in TARGETS:
        return []
    return [o for o in families if o is not fam and o["model"] == fam["model"]
            and o["multi_task_experiment"] == fam["multi_task_experiment"]
            and o["parity_mode"] == fam["parity_mode"] and o.get("control") == fam.get("control")
            and o["parity_target"] in TARGETS and o["parity_target"] != fam["parity_target"]]


def _add_sensitivity(study: Study, fam: dict[str, Any], families: list[dict[str, Any]]) -> None:
    """Each compared row's ``sensitivity``: whether its verdict changes with the TC side at
    its best-validation weights, or under the other parity target (not a second verdict)."""
    best = _best_weights_alternative(study, fam)
    others = _other_targets(fam, families)
    for row in (r for r in fam["rows"] if "parity_summary" in r):
        alt = []
        for o in others:
            orow = next((r for r in o["rows"] if r["task"] == row["task"]), {})
            alt.append({"token_controlled_experiment": o["token_controlled_experiment"],
                        "target": o["parity_target"], "verdict": orow.get("verdict")
                        if "parity_summary" in orow else None,
                        "reason": orow.get("verdict_reason") or orow.get("reason")})
        verdicts = [best[row["task"]]["verdict"]] + [a["verdict"] for a in alt]
        row["sensitivity"] = {
            "best_weights": best[row["task"]], "other_targets": alt,
            "changes": any(v is not None and v != row["verdict"] for v in verdicts)}
