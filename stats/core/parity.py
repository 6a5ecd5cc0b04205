"""Token parity of a matched multi-task / token-controlled pair: the tokens the
token-controlled job had to match (parity mode x target), whether it matched them, and a
task's parity over all its pairs.
"""

from __future__ import annotations

import math
from typing import Any

from stats.core import significance
from stats.read.results import JobResult

TARGETS = ("total", "best")  # parity.target: the reference's token_count | tokens_at_best


def parity_target(tc: JobResult) -> str | None:
    """The token target a token-controlled job aimed at: "total" | "best"; None when not
    recorded (results written before parity targets were recorded all aimed at the reference's
    token_count)."""
    target = (tc.parity or {}).get("target", tc.config.get("parity_target"))
    return target if target in TARGETS else None


def _mt_tokens_for(mt: JobResult, task: str, mode: str | None,
                   target: str | None = None) -> int | None:
    """The reference's tokens a token-controlled job must match (parity mode × target)."""
    if target == "best":
        return mt.tokens_per_task_at_best.get(task) if mode == "per_task" else mt.tokens_at_best
    if mode == "per_task":
        tr = mt.per_task.get(task)
        if tr is not None and tr.tokens is not None:
            return tr.tokens
        return mt.tokens_per_task.get(task)
    return mt.token_count


def pair_parity(task: str, seed: int, mt: JobResult, tc: JobResult,
                 threshold: float) -> dict[str, Any]:
    """Token parity of one matched pair under the TC job's mode and target, with what the
    runner recorded about reaching it (None where an older result lacks it)."""
    block = tc.parity or {}
    mode, target = block.get("mode", "total"), parity_target(tc)
    p = significance.token_parity(_mt_tokens_for(mt, task, mode, target), tc.token_count,
                           mt.tokenizer, tc.tokenizer, threshold)
    reached = block.get("reached")
    return {**p, "seed": seed, "mode": mode, "target": target, "mt_job": mt.job_id,
            "tc_job": tc.job_id, "reached": reached if isinstance(reached, bool) else None,
            **{k: block.get(k) for k in ("epochs_run", "epochs_needed", "epoch_cap",
                                         "stopped_because", "relative_gap")}}


def epochs_text(x: Any) -> str:
    return "?" if not isinstance(x, (int, float)) else f"{x:,.1f}".removesuffix(".0")


def _not_reached_text(parity: list[dict[str, Any]]) -> str | None:
    """"parity not reached (gap X%, N epochs of M needed)" for the worst pair whose job hit
    its epoch cap; None when every pair reached its target (or did not say)."""
    short = [p for p in parity if p["reached"] is False]
    if not short:
        return None

    def gap(p: dict[str, Any]) -> float:
        g = p["gap"] if p["gap"] is not None else p.get("relative_gap")
        return g if isinstance(g, (int, float)) else float("nan")

    worst = max(short, key=lambda p: (not math.isnan(gap(p)), gap(p)))
    g = gap(worst)
    text = (f"parity not reached (gap {'?' if math.isnan(g) else f'{100 * g:.1f}'}%, "
            f"{epochs_text(worst['epochs_run'])} epochs of {epochs_text(worst['epochs_needed'])} "
            "needed)")
    if len(parity) > 1:
        text += f" in {len(short)} of {len(parity)} seeds (seed {worst['seed']} shown)"
    return text


def parity_summary(parity: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Parity of a task's matched pairs: holds only if it holds for every pair; a pair whose
    token-controlled job stopped at its epoch cap (``reached`` false) never holds."""
    reasons = [p["reason"] for p in parity if p["reason"]]
    gaps = [p["gap"] for p in parity if p["gap"] is not None]
    max_gap = max(gaps) if gaps else None
    short = _not_reached_text(parity)
    if short:
        return {"holds": False, "max_gap": max_gap, "threshold": threshold, "detail": short,
                "reason": None, "not_reached": short}
    if reasons:
        return {"holds": None, "max_gap": max_gap, "threshold": threshold,
                "detail": reasons[0], "reason": reasons[0], "not_reached": None}
    holds = all(p["holds"] for p in parity)
    rel = "<" if holds else "≥"
    return {"holds": holds, "max_gap": max_gap, "threshold": threshold,
            "detail": f"max gap {100 * max_gap:.2f}% {rel} {100 * threshold:g}% over "
                      f"{len(parity)} pair(s)", "reason": None, "not_reached": None}
