"""RQ5: is a multi-task gain transfer or data exposure? Multi-task against token-controlled
single-task systems (the statistics and verdicts are :func:`stats.core.token_controlled.rq5_groups`):
Table 3 and SUMMARY.txt."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mtl_contract.schema import TC
from stats.core import controls
from stats.core.significance import verdict_rule
from stats.questions.context import Context, SectionOutput, SummaryBlock
from stats.render import tables
from stats.render.numbers import interval, num, p_value, points, tokens
from stats.render.summary import (
    clean_units_text,
    effect_text,
    level_text,
    mde_text,
    pooled_text,
    seeds_text,
)


def _rq5_family_line(f: dict[str, Any]) -> str:
    if f["model"] is None:
        return "token-controlled jobs without a usable multi-task reference:"
    if f.get("token_controlled_experiment") is None:
        return f"{f['model']}, {f['multi_task_experiment']}: no token-controlled system"
    control = (" text-matched control (masked-LM on the other tasks' text)"
               if f.get("control") == controls.TEXT else "")
    return (f"{f['model']}, {f['multi_task_experiment']} vs {f['token_controlled_experiment']} "
            f"({control.strip() + ', ' if control else ''}parity {f['parity_mode']}, target "
            f"{f['parity_target'] or 'not recorded'}; TC tested at its final weights):")


def _alternative_text(what: str, verdict: str | None, main: str, detail: str) -> str:
    if verdict is None:
        return f"{what}: n/a ({detail})"
    return f"{what}: {verdict} ({'unchanged' if verdict == main else 'CHANGES'}{detail})"


def _sensitivity_line(r: dict[str, Any]) -> str:
    """One line: does the verdict change with TC at its best-validation weights, or under
    the other parity target? (Not a second verdict.)"""
    sens = r.get("sensitivity") or {}
    best = sens.get("best_weights") or {}
    detail = (f"; MT − TC {points(best.get('mean_diff'))} points, Holm p {p_value(best.get('p_holm'))}"
              if best.get("verdict") else best.get("reason") or "not computed")
    parts = [_alternative_text("TC at its best-validation weights", best.get("verdict"),
                               r["verdict"], detail)]
    for o in sens.get("other_targets", []):
        parts.append(_alternative_text(
            f"parity target {o['target']!r} ({o['token_controlled_experiment']})", o["verdict"],
            r["verdict"], "" if o["verdict"] else o.get("reason") or "no comparison"))
    target = next((p["target"] for p in r["parity"] if p["target"]), None)
    if not sens.get("other_targets"):
        parts.append("other parity target: " + (
            "n/a (this system's target is not recorded)" if target is None else
            f"n/a (no token-controlled system with target "
            f"{'best' if target == 'total' else 'total'!r} on this multi-task system)"))
    compared = [best.get("verdict")] + [o["verdict"] for o in sens.get("other_targets", [])]
    end = ("the verdict depends on these choices" if sens.get("changes")
           else "verdict unchanged" if any(compared) else "nothing to compare")
    return "    sensitivity (not a second verdict): " + "; ".join(parts) + f" — {end}"


def _rq5_lines(r: dict[str, Any], family: dict[str, Any]) -> list[str]:
    if "parity_summary" not in r:
        return [f"  {r['model']} {r['task']}: {r.get('verdict')} (n/a: {r['reason']})"]
    ps, boot = r["parity_summary"], r.get("paired_bootstrap") or {}
    ci = r.get("diff_interval") or {}
    head = (f"  {r['model']} {r['task']} ({r['primary_metric']}, "
            f"{family['multi_task_experiment']} vs {r['token_controlled_experiment']}): "
            f"verdict {r['verdict'].upper()} — {r['verdict_reason']}")
    numbers = (
        f"    {seeds_text(r)}: ST {points(r['st_mean'], False)}, MT {points(r['mt_mean'], False)} "
        f"({tokens(r['mt_tokens_mean'])} tokens), TC {points(r['tc_mean'], False)} "
        f"({tokens(r['tc_tokens_mean'])} tokens); parity: {ps['detail']}; "
        f"MT − TC {points(r['mean_diff'])} points, seed-level {level_text(ci)} CI "
        f"{interval(ci.get('low'), ci.get('high'))}, paired t p {p_value(r['paired_t']['p'])}, "
        f"Holm p {p_value(r['p_holm'])}; {_equivalence_text(r)}; test-set resampling {level_text(boot)} CI "
        f"{interval(boot.get('low'), boot.get('high'))}; effect {effect_text(r['d_z'])}, "
        f"{pooled_text(r['pooled_d'])}; token efficiency MT {num(r['mt_efficiency'], '.4f')}, "
        f"TC {num(r['tc_efficiency'], '.4f')} per million tokens; MDE (80% power) "
        f"{mde_text(r)}")
    out = [head, numbers, _sensitivity_line(r)]
    return out + ([_clean_rq5_line(r)] if "clean" in r else [])


def _clean_rq5_line(r: dict[str, Any]) -> str:
    """The RQ5 row recomputed on its clean test units (verdict included), under it."""
    c = r["clean"]
    if not c.get("n") or "parity_summary" not in c:
        return f"    clean units: n/a ({c['reason']})"
    ci, st = c.get("diff_interval") or {}, c.get("mt_minus_st") or {}
    change = "unchanged" if c["verdict"] == r["verdict"] else \
        f"CHANGES from {r['verdict'].upper()}"
    return (f"    {clean_units_text(c)}: ST {points(c['st_mean'], False)}, MT "
            f"{points(c['mt_mean'], False)}, TC {points(c['tc_mean'], False)}; MT − TC "
            f"{points(c['mean_diff'])} points, seed-level {level_text(ci)} CI "
            f"{interval(ci.get('low'), ci.get('high'))}, paired t p "
            f"{p_value((c.get('paired_t') or {}).get('p'))}, Holm p {p_value(c['p_holm'])}; MT − ST "
            f"{points(st.get('mean_diff'))} points, Holm p {p_value(st.get('p_holm'))}; verdict "
            f"{c['verdict'].upper()} ({change})")


def _equivalence_text(r: dict[str, Any]) -> str:
    eq = r.get("equivalence") or {}
    if eq.get("low") is None:
        return f"equivalence n/a ({eq.get('reason') or 'not computed'})"
    return (f"equivalence (TOST, ±{100 * eq['margin']:g} points): "
            f"{100 * eq['level']:g}% CI {interval(eq['low'], eq['high'])}, p "
            f"{p_value(eq['p'])} -> {'equivalent' if eq['equivalent'] else 'equivalence not shown'}")


def _counts_line(mode: str, families: list[dict[str, Any]]) -> str | None:
    verdicts = Counter(r.get("verdict") for f in families for r in f["rows"])
    if not verdicts:
        return None
    what = ("total-parity verdicts" if mode == "total"
            else "per-task parity verdicts (a separate question, not counted above)")
    return f"{what}: " + ", ".join(f"{k}: {v}" for k, v in sorted(
        verdicts.items(), key=lambda kv: str(kv[0])))


def _reconcile(by_mode: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One sentence per (model, multi-task system, task) that both parity modes compared."""
    def rows(mode: str) -> dict[tuple, dict[str, Any]]:
        return {(f["model"], f["multi_task_experiment"], r["task"]): r
                for f in by_mode[mode] for r in f["rows"] if "parity_summary" in r}

    total, per_task = rows("total"), rows("per_task")
    out = []
    for key in sorted(set(total) & set(per_task)):
        t, p = total[key], per_task[key]
        out.append(
            f"both parity modes, {key[0]} {key[1]} {key[2]}: per-task parity reads "
            f"{p['verdict'].upper()} (MT − TC {points(p['mean_diff'])} points against a TC "
            f"trained on the {tokens(p['mt_tokens_mean'])} tokens MT spent on {key[2]}), total "
            f"parity reads {t['verdict'].upper()} (MT − TC {points(t['mean_diff'])} points "
            f"against a TC trained on all {tokens(t['mt_tokens_mean'])} of MT's tokens); only "
            "the total-parity verdict answers whether the gain is transfer rather than "
            "exposure, the per-task one whether it exceeds more of the task's own data.")
    return out


def _control_lines(ctx: Context, families: list[dict[str, Any]], control: str) -> list[str]:
    """One control's SUMMARY lines: its question and rule, verdict counts per parity mode
    (never pooled), the sentences reconciling the modes, and its comparisons."""
    opt = ctx.options
    rule = verdict_rule(opt.alpha, opt.parity_threshold, opt.equivalence_margin)
    by_mode = tables.rq5_modes(families)
    lines = [f"question: {controls.QUESTION[control]}",
             f"rule: {controls.rule_text(control, rule)}"]
    lines += [c for m in ("total", "per_task") if (c := _counts_line(m, by_mode[m]))]
    lines += _reconcile(by_mode)
    for mode in ("total", "per_task"):
        for f in by_mode[mode]:
            lines.append(_rq5_family_line(f))
            for r in f["rows"]:
                lines += _rq5_lines(r, f)
    return lines


def by_control(families: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The RQ5 families per control, never pooled: the text-matched control's
    comparisons apart; the repeat control's with everything else (multi-task systems without
    a token-controlled one, orphans), as before the text control existed."""
    out: dict[str, list[dict[str, Any]]] = {controls.REPEAT: [], controls.TEXT: []}
    for f in families:
        out[controls.TEXT if f.get("control") == controls.TEXT else controls.REPEAT].append(f)
    return out


def section(ctx: Context) -> SectionOutput:
    opt = ctx.options
    split = by_control(ctx.analysis.rq5)
    lines = _control_lines(ctx, split[controls.REPEAT], controls.REPEAT)
    if not any(j.strategy == TC for j in ctx.study.jobs):
        lines.insert(2, "not applicable: no token-controlled job among the results")
    elif not any(f.get("token_controlled_experiment") for f in split[controls.REPEAT]):
        lines.insert(2, "no repeat-control token-controlled system among the results (the "
                     "text-matched control's comparisons follow in their own block)")
    by_mode = tables.rq5_modes(split[controls.REPEAT])
    tables_out = {"table_rq5_token_controlled.tex": tables.rq5_table(
        ctx.env, by_mode["total"], opt.alpha, opt.parity_threshold, ctx.source,
        opt.equivalence_margin)}
    if by_mode["per_task"]:
        tables_out["table_rq5_per_task_parity.tex"] = tables.rq5_table(
            ctx.env, by_mode["per_task"], opt.alpha, opt.parity_threshold, ctx.source,
            opt.equivalence_margin, mode="per_task")
    blocks = [SummaryBlock("RQ5: token-controlled transfer analysis", lines)]
    rule = verdict_rule(opt.alpha, opt.parity_threshold, opt.equivalence_margin)
    statistics = {"rq5": ctx.analysis.rq5, "rq5_verdict_rule": rule,
                  "rq5_equivalence_margin": opt.equivalence_margin}
    if split[controls.TEXT]:
        text_lines = _control_lines(ctx, split[controls.TEXT], controls.TEXT)
        both = controls.reconciliations(ctx.analysis.rq5)
        text_lines += [f"  both controls, {c['model']} {c['task']} ({c['multi_task_experiment']}"
                       f" vs {c['repeat']['experiment']} and {c['text']['experiment']}): "
                       f"{c['sentence']}" for c in both]
        blocks.append(SummaryBlock("RQ5 (text-matched control): cross-task supervision vs "
                                   "text exposure", text_lines))
        tables_out["table_rq5_text_controlled.tex"] = tables.rq5_table(
            ctx.env, split[controls.TEXT], opt.alpha, opt.parity_threshold, ctx.source,
            opt.equivalence_margin, control=controls.TEXT)
        statistics["rq5_reconciled"] = both
        statistics["rq5_text_verdict_rule"] = controls.rule_text(controls.TEXT, rule)
    return SectionOutput(tables=tables_out, statistics=statistics, summary=blocks)
