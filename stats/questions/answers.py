"""SUMMARY.txt's opening "Answers" block and statistics.json's ``answers`` entry.

A co-author reads this in a minute: per research question with results, the key numbers
with their intervals (RQ5 first, the primary question, then RQ1, RQ2-RQ4), each of the
methodology's success criteria (METHODOLOGY 14.1) marked met / not met / not testable (and
why), counts per model and per parity mode, and one sentence on what the study could detect
at all from its seeds and measured spread.

Nothing here is re-derived: verdicts, Holm p-values, intervals and effect sizes are read from
the sections' statistics.json entries (``rq5``, ``rq1``, ``rq2``, ``rq3``, ``rq4``) as they
were written; only counting, choosing and the seeds needed for a 2-point difference
(:func:`stats.core.power.seeds_needed`) happen here.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from statistics import median
from typing import Any

from stats.core import controls
from stats.core.power import mde_dz, seeds_needed
from stats.core.significance import GENUINE
from stats.questions.context import SummaryBlock
from stats.render.names import Names
from stats.render.numbers import interval, num, p_value, points
from stats.render.summary import metric_range

WIDTH = 100  # characters per Answers line
MET, NOT_MET, NOT_TESTABLE = "met", "not met", "not testable"
# the methodology's expectations (14.1): RQ1 average gain in points, and on how many of 8
RQ1_GAIN_RANGE = (2.0, 5.0)
RQ1_IMPROVED, RQ1_DATASETS = 5, 8
RQ5_D = 0.3
TARGET_POINTS = 2.0  # the difference the power sentence asks seeds for


def _criterion(name: str, status: str, detail: str) -> dict[str, str]:
    return {"criterion": name, "status": status, "detail": detail}


def _criterion_line(c: dict[str, str]) -> str:
    return f"  [{c['status'].upper()}] {c['criterion']}: {c['detail']}"


def _compared_rq5(rq5: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(family, row) of every RQ5 row that was compared (has a parity summary)."""
    return [(f, r) for f in rq5 for r in f.get("rows", []) if "parity_summary" in r]


def _ci(row: dict[str, Any]) -> tuple[float | None, float | None]:
    """The row's interval of its difference: paired bootstrap over test units, else the
    seed-level interval of the differences."""
    boot = row.get("paired_bootstrap") or {}
    if boot.get("low") is not None:
        return boot["low"], boot["high"]
    seed = row.get("diff_interval") or {}
    return seed.get("low"), seed.get("high")


def _verdict_counts(rows: list[dict[str, Any]]) -> str:
    counts = Counter(str(r.get("verdict")) for r in rows)
    order = sorted(counts, key=lambda v: (v != GENUINE, -counts[v], v))
    return ", ".join(f"{v} {counts[v]}" for v in order)


def _meets_rq5(row: dict[str, Any]) -> bool:
    """The methodology's RQ5 criterion on one comparison: the genuine-transfer verdict (MT −
    TC > 0 at Holm p < alpha, under parity) and Cohen's d (pooled SD) above 0.3."""
    d = (row.get("pooled_d") or {}).get("d")
    return row.get("verdict") == GENUINE and d is not None and d > RQ5_D


def _strongest(pairs: list[tuple[dict[str, Any], dict[str, Any]]]):
    """The tested row that meets the criterion, else has the genuine-transfer verdict, else
    any, with the smallest Holm p (then the largest difference)."""
    tested = [(f, r) for f, r in pairs if r.get("p_holm") is not None
              and r.get("mean_diff") is not None]
    if not tested:
        return None
    return min(tested, key=lambda fr: (not _meets_rq5(fr[1]), fr[1].get("verdict") != GENUINE,
                                       fr[1]["p_holm"], -fr[1]["mean_diff"]))


def rq5_answer(rq5: list[dict[str, Any]], names: Names, alpha: float) -> dict[str, Any]:
    pairs = _compared_rq5(rq5)
    out: dict[str, Any] = {"compared": len(pairs), "verdicts": {}, "by_parity_mode": {},
                           "by_model": {}, "strongest": None, "criteria": [], "lines": []}
    lines = out["lines"]
    if not pairs:
        # the text-matched control is counted on its own line (never pooled): say which
        why = ("no token-controlled job with the methodology's (repeat) control among the "
               "results" if not any(
            f.get("token_controlled_experiment") for f in rq5)
            else "no task has a multi-task and a token-controlled run sharing a seed")
        lines.append(f"  No comparison: {why}.")
        out["criteria"].append(_criterion(
            f"p < {alpha:g} and Cohen's d > {RQ5_D:g} for MT - TC", NOT_TESTABLE, why))
        return out
    rows = [r for _, r in pairs]
    out["verdicts"] = dict(Counter(str(r.get("verdict")) for r in rows))
    models = sorted({f["model"] for f, _ in pairs})
    modes = sorted({str(f.get("parity_mode")) for f, _ in pairs})
    sets = sorted({f["multi_task_experiment"] for f, _ in pairs})
    lines.append(f"  {len(rows)} task comparisons ({len(models)} model(s) x {len(sets)} multi-task "
                 f"set(s) x {len(modes)} parity mode(s)); verdicts:")
    for mode in modes:
        mine = [r for f, r in pairs if str(f.get("parity_mode")) == mode]
        out["by_parity_mode"][mode] = dict(Counter(str(r.get("verdict")) for r in mine))
        lines.append(f"    parity {mode}: {_verdict_counts(mine)}")
    for model in models:
        mine = [r for f, r in pairs if f["model"] == model]
        out["by_model"][model] = dict(Counter(str(r.get("verdict")) for r in mine))
        lines.append(f"    {model}: {_verdict_counts(mine)}")
    best = _strongest(pairs)
    if best is not None:
        f, r = best
        lo, hi = _ci(r)
        d = (r.get("pooled_d") or {}).get("d")
        out["strongest"] = {"model": f["model"], "task": r["task"],
                            "multi_task_experiment": f["multi_task_experiment"],
                            "token_controlled_experiment": f.get("token_controlled_experiment"),
                            "mean_diff": r["mean_diff"], "low": lo, "high": hi,
                            "p_holm": r["p_holm"], "pooled_d": d, "verdict": r.get("verdict")}
        lines.append(
            f"  Strongest evidence: {f['model']} {r['task']}, {names(f['multi_task_experiment'])}"
            f" vs {names(f.get('token_controlled_experiment'))}: MT - TC "
            f"{points(r['mean_diff'])} points, 95% CI {interval(lo, hi)}, Holm p "
            f"{p_value(r['p_holm'])}, Cohen's d {num(d, '+.2f')} ({r.get('verdict')}).")
    tested = [r for r in rows if r.get("p_holm") is not None]
    hits = [r for r in rows if _meets_rq5(r)]
    name = f"genuine transfer at Holm p < {alpha:g} with Cohen's d > {RQ5_D:g}"
    if not tested:
        reasons = Counter(str((r.get("paired_t") or {}).get("reason") or r.get("reason"))
                          for r in rows)
        out["criteria"].append(_criterion(name, NOT_TESTABLE,
                                          f"no comparison has a test ({reasons.most_common(1)[0][0]})"))
    elif hits:
        out["criteria"].append(_criterion(name, MET, f"in {len(hits)} of {len(rows)} comparisons"
                                          f" ({len(tested)} tested)"))
    else:
        out["criteria"].append(_criterion(name, NOT_MET, f"in none of {len(rows)} comparisons "
                                          f"({len(tested)} tested)"))
    return out


def _rq1_family(families: list[dict[str, Any]], model: str) -> dict[str, Any] | None:
    """The model's comparison over the most tasks (the all-8 set where there is one)."""
    mine = [f for f in families if f["model"] == model and f.get("multi_task_experiment")]
    if not mine:
        return None
    return max(mine, key=lambda f: (f["summary"]["tasks_compared"], len(f["rows"])))


def rq1_answer(rq1: list[dict[str, Any]], names: Names, alpha: float) -> dict[str, Any]:
    out: dict[str, Any] = {"by_model": {}, "criteria": [], "lines": []}
    lines = out["lines"]
    chosen = {m: f for m in sorted({f["model"] for f in rq1}) if (f := _rq1_family(rq1, m))}
    compared = {m: f for m, f in chosen.items() if f["summary"]["tasks_compared"]}
    c_improved = f"improvement on >= {RQ1_IMPROVED} of {RQ1_DATASETS} datasets (Holm p < {alpha:g})"
    lo_g, hi_g = RQ1_GAIN_RANGE
    c_gain = f"average gain +{lo_g:g} to +{hi_g:g} points"
    if not compared:
        why = "no task has a matched single-task and multi-task seed"
        lines.append(f"  No comparison: {why}.")
        out["criteria"] += [_criterion(c_improved, NOT_TESTABLE, why),
                            _criterion(c_gain, NOT_TESTABLE, why)]
        return out
    lines.append("  Per model, its multi-task system over the most tasks against single-task:")
    for m, f in compared.items():
        s = f["summary"]
        out["by_model"][m] = {"multi_task_experiment": f["multi_task_experiment"],
                              "tasks_compared": s["tasks_compared"],
                              "improved_significant": s["improved_significant"],
                              "worse_significant": s["worse_significant"],
                              "mean_gain": s["mean_gain"], "low": s["low"], "high": s["high"]}
        lines.append(f"    {m}, {names(f['multi_task_experiment'])}: {s['improved_significant']} of "
                     f"{s['tasks_compared']} tasks better, {s['worse_significant']} worse; mean "
                     f"{points(s['mean_gain'])} points, 95% CI {interval(s['low'], s['high'])}")
    # criterion 1: >= 5 of 8 datasets improved (needs 8 compared datasets)
    full = {m: f for m, f in compared.items() if f["summary"]["tasks_compared"] >= RQ1_DATASETS}
    if not full:
        most = max(f["summary"]["tasks_compared"] for f in compared.values())
        out["criteria"].append(_criterion(
            c_improved, NOT_TESTABLE, f"at most {most} dataset(s) compared in one multi-task "
            f"system, the criterion needs {RQ1_DATASETS}"))
    else:
        met = [m for m, f in full.items()
               if f["summary"]["improved_significant"] >= RQ1_IMPROVED]
        top = max(f["summary"]["improved_significant"] for f in full.values())
        out["criteria"].append(_criterion(
            c_improved, MET if met else NOT_MET,
            f"{len(met)} of {len(full)} model(s); most improved: {top} of {RQ1_DATASETS}"))
    # criterion 2: mean gain within +2 to +5 points, its interval above zero
    gains = {m: f["summary"] for m, f in compared.items() if f["summary"]["mean_gain"] is not None}
    if not gains:
        out["criteria"].append(_criterion(c_gain, NOT_TESTABLE, "no mean gain"))
    else:
        met = [m for m, s in gains.items() if lo_g <= 100 * s["mean_gain"] <= hi_g
               and s["low"] is not None and s["low"] > 0]
        no_ci = [m for m, s in gains.items() if s["low"] is None]
        detail = (f"{len(met)} of {len(gains)} model(s) (point estimate in range, 95% CI above "
                  f"0)" + (f"; {len(no_ci)} without an interval" if no_ci else ""))
        status = MET if met else NOT_TESTABLE if len(no_ci) == len(gains) else NOT_MET
        out["criteria"].append(_criterion(c_gain, status, detail))
    return out


def rq2_answer(rq2: dict[str, Any]) -> dict[str, Any]:
    rows = [r for r in rq2.get("rows", []) if r.get("task") is not None]
    name = "out-of-distribution transfer demonstrated on held-out tasks"
    if not rows:
        why = rq2.get("reason") or "no held-out comparison"
        return {"criteria": [_criterion(name, NOT_TESTABLE, why)], "lines": []}
    better = [r for r in rows if r.get("significant") and
              ((r.get("bootstrap") or {}).get("delta") or 0) > 0]
    worse = [r for r in rows if r.get("significant") and
             ((r.get("bootstrap") or {}).get("delta") or 0) < 0]
    lines = [(f"  {len(rows)} held-out comparisons: MT better in {len(better)}, ST better in "
             f"{len(worse)} (Holm p < {rq2.get('alpha', 0.05):g}).")]
    tested = [r for r in rows if r.get("p_holm") is not None]
    status = MET if better else NOT_MET if tested else NOT_TESTABLE
    return {"criteria": [_criterion(name, status, f"MT better in {len(better)} of {len(rows)}")],
            "lines": lines, "better": len(better), "worse": len(worse), "compared": len(rows)}


def rq3_answer(rq3: dict[str, Any]) -> dict[str, Any]:
    rows = rq3.get("rows", [])
    name = "efficiency analysis complete"
    if not rows:
        return {"criteria": [_criterion(name, NOT_TESTABLE, rq3.get("reason") or "no levels")],
                "lines": []}
    front = sum(1 for r in rows if r.get("pareto_size") or r.get("pareto_latency"))
    calibrated = sum(1 for r in rows if r.get("ece_before") is not None)
    skipped = len(rq3.get("skipped_levels", []))
    lines = [(f"  {len(rows)} evaluated levels, {front} on a size or latency frontier, "
             f"{calibrated} calibrated; {skipped} level(s) skipped.")]
    status = MET if not skipped else NOT_MET
    detail = (f"{len(rows)} levels evaluated" + (f", {skipped} skipped" if skipped else ""))
    return {"criteria": [_criterion(name, status, detail)], "lines": lines}


def rq4_answer(rq4: dict[str, Any], alpha: float) -> dict[str, Any]:
    rows = [r for r in rq4.get("rows", []) if r.get("mean_gain") is not None]
    name = "negative transfer identified and explained by task similarity"
    if not rows:
        why = rq4.get("reason") or "no pairwise multi-task gain"
        return {"criteria": [_criterion(name, NOT_TESTABLE, why)], "lines": []}
    negative = [r for r in rows if r.get("negative_transfer")]
    corr = [c for c in rq4.get("correlations", []) if c.get("p") is not None]
    explained = [c for c in corr if c["p"] < alpha]
    lines = [(f"  {len(rows)} pairwise gains: negative transfer in {len(negative)} (Holm p < "
             f"{alpha:g}); similarity-gain correlations significant: {len(explained)} of "
             f"{len(corr)}.")]
    if negative and explained:
        status, detail = MET, f"{len(negative)} negative, {len(explained)} correlation(s)"
    elif not corr:
        status = NOT_TESTABLE if negative else NOT_MET
        detail = (f"{len(negative)} negative; no correlation "
                  f"({rq4.get('similarity_reason') or 'not computed'})")
    else:
        status, detail = NOT_MET, (f"{len(negative)} negative, {len(explained)} significant "
                                   "correlation(s)")
    return {"criteria": [_criterion(name, status, detail)], "lines": lines,
            "negative": len(negative)}


def power_answer(rq1: list[dict[str, Any]], rq5: list[dict[str, Any]],
                 alpha: float) -> dict[str, Any]:
    """What the study could detect at all: the paired test's minimum detectable difference
    at 80% power with its usual number of matched seeds and the median measured sd of the
    paired differences (RQ1 and RQ5 rows), and the seeds a 2-point difference needs."""
    rows = [r for f in rq1 for r in f.get("rows", []) if r.get("n")] + \
        [r for _, r in _compared_rq5(rq5)]
    sds = [(r.get("paired_t") or {}).get("sd_diff") for r in rows]
    sds = [100 * s for s in sds if s is not None and s > 0]
    ns = [r["n"] for r in rows if r.get("n")]
    out: dict[str, Any] = {"seeds": None, "sd_diff_points": None, "mde_points": None,
                           "seeds_for_2_points": None, "detectable": None, "sentence": ""}
    if not ns:
        out["sentence"] = "Power: no paired comparison, so nothing about its power can be said."
        return out
    n = int(median(ns))
    out["seeds"] = n
    if n < 2 or not sds:
        why = "1 matched seed runs no paired test" if n < 2 else "the differences show no spread"
        out["sentence"] = (f"Power: {why}; the study cannot tell how small a difference it "
                           "could detect. Run more seeds.")
        return out
    sd = median(sds)
    mde = mde_dz(n, alpha) * sd
    need = seeds_needed(TARGET_POINTS, sd, alpha)
    span = min(metric_range(r.get("primary_metric")) for r in rows)
    out.update({"sd_diff_points": sd, "mde_points": mde, "seeds_for_2_points": need,
                "detectable": mde <= span})
    needs = (f">= {need} seeds needed for {TARGET_POINTS:g} points" if need
             else f"no feasible number of seeds reaches {TARGET_POINTS:g} points")
    lo_g, hi_g = RQ1_GAIN_RANGE
    head = (f"Power: with {n} seeds and the measured spread (median sd of the paired differences "
            f"{sd:.2f} points), ")
    if mde > span:
        out["sentence"] = (head + f"no difference within the metric's range is detectable at "
                           f"80% power: not detectable with {n} seeds; {needs}. {n} seeds "
                           "cannot detect differences of the size the methodology expects, so "
                           "this run checks the pipeline, not the hypothesis.")
    elif mde > hi_g:
        out["sentence"] = (head + f"a paired test detects only differences of {mde:.1f} points "
                           f"or more (80% power), not the +{lo_g:g} to +{hi_g:g} the methodology "
                           f"expects; {needs}. This run checks the pipeline, not the hypothesis.")
    elif mde > TARGET_POINTS:
        out["sentence"] = (head + f"a paired test detects differences of {mde:.1f} points (80% "
                           f"power), so gains near +{lo_g:g} can be missed; {needs}.")
    else:
        out["sentence"] = (head + f"a paired test detects differences of {mde:.1f} points (80% "
                           f"power), below the +{lo_g:g} to +{hi_g:g} the methodology expects.")
    return out


def _underpowered(power: dict[str, Any]) -> str | None:
    """Why a "not met" of RQ1 / RQ5 says nothing: the study cannot detect the differences
    the methodology expects (its MDE is above +5 points, or unknown); None when it can."""
    hi_g = RQ1_GAIN_RANGE[1]
    if power["seeds"] is None:
        return None
    if power["mde_points"] is None:
        return "underpowered: no measured spread to size the tests by"
    if power["mde_points"] > hi_g:
        detectable = ("no difference within the metric's range" if not power["detectable"]
                      else f"only differences of {power['mde_points']:.1f}+ points")
        return f"underpowered: {power['seeds']} seeds detect {detectable}"
    return None


def wrap(line: str, width: int = WIDTH) -> list[str]:
    """A line folded at spaces into lines of at most ``width``, continuations indented."""
    if len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip()) + 4)
    return textwrap.wrap(line, width=width, subsequent_indent=indent, break_long_words=True,
                         break_on_hyphens=False)


def answers(statistics: dict[str, Any], tasks: list[str], alpha: float) -> tuple[SummaryBlock, dict[str, Any]]:
    """The Answers block and statistics.json's ``answers`` entry, from the sections'
    statistics (a section that did not run is simply absent)."""
    every5, rq1 = statistics.get("rq5") or [], statistics.get("rq1") or []
    # the verdicts are the repeat control's; the text-matched control is counted
    # on a line of its own, never pooled with them
    rq5 = [f for f in every5 if f.get("control") != controls.TEXT]
    text5 = [f for f in every5 if f.get("control") == controls.TEXT]
    labels = [f.get(k) for f in rq5 + rq1 for k in
              ("multi_task_experiment", "token_controlled_experiment")]
    names = Names(labels, tasks)
    entry: dict[str, Any] = {}
    lines: list[str] = []

    power = power_answer(rq1, rq5, alpha)
    weak = _underpowered(power)

    def question(key: str, title: str, ans: dict[str, Any]) -> None:
        if weak and key in ("rq1", "rq5"):  # "not met" by a test that could not see it
            for c in ans["criteria"]:
                if c["status"] in (MET, NOT_MET):  # a met one stands, read with the Power line
                    c["status"] = MET if c["status"] == MET else NOT_TESTABLE
                    c["detail"] = f"{c['detail']}; {weak}"
        entry[key] = {k: v for k, v in ans.items() if k != "lines"}
        lines.append(title)
        lines.extend(ans["lines"])
        lines.extend(_criterion_line(c) for c in ans["criteria"])

    if "rq5" in statistics:
        ans5 = rq5_answer(rq5, names, alpha)
        text_rows = [r for _, r in _compared_rq5(text5)]
        if text_rows:
            ans5["text_control_verdicts"] = dict(Counter(str(r.get("verdict")) for r in text_rows))
            ans5["lines"].append(f"  Text-matched control ({len(text_rows)} comparisons): "
                                 f"{_verdict_counts(text_rows)}")
        question("rq5", "RQ5 (primary): is a multi-task gain still there at equal training tokens?",
                 ans5)
    if "rq1" in statistics:
        question("rq1", "RQ1: does multi-task fine-tuning beat single-task?",
                 rq1_answer(rq1, names, alpha))
    secondary = [("rq2", "RQ2: out-of-distribution transfer", rq2_answer),
                 ("rq3", "RQ3: efficiency and calibration", rq3_answer),
                 ("rq4", "RQ4: negative transfer", lambda s: rq4_answer(s, alpha))]
    without = []
    for key, title, fn in secondary:
        if key not in statistics:
            continue
        ans = fn(statistics[key])
        if ans["lines"]:
            question(key, title, ans)
        else:
            entry[key] = {k: v for k, v in ans.items() if k != "lines"}
            without.append(f"{key.upper()} ({ans['criteria'][0]['detail']})")
    if without:
        lines.append("No results for " + "; ".join(without) + ": their criteria are not testable.")
    entry["power"] = {k: v for k, v in power.items() if k != "sentence"}
    lines.append(power["sentence"])
    key = names.key(used_only=True)
    if key:
        lines.append("Names: " + "; ".join(f"{s} = {f}" for s, f in key))
    entry["names"] = dict(key)
    folded = [part for line in lines for part in wrap(line)]
    entry["lines"] = folded
    return SummaryBlock("Answers", folded), entry
