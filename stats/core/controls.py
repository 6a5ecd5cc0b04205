"""RQ5's two controls (repeated data, text-matched), kept apart: which control a token-controlled job ran, the
question each answers, its verdict words, and the sentence that reconciles the two where one
multi-task system and task has both.

* ``repeat`` -- the methodology's: the task's own data repeated to the multi-task job's token
  count.  MT above it: more than data exposure ("genuine transfer"); not above: "data
  exposure".
* ``text`` -- text-matched: the multi-task job replayed with the other tasks' text fed as
  unlabelled masked-LM batches (runner.ml.mlm): the same text and real tokens, no cross-task
  labels.  MT above it: the other tasks' labels transfer ("cross-task supervision"); not
  above: the gain is "text exposure".

The verdict rule itself (stats.core.significance.rq5_verdict) is one; only its words differ.  A
comparison is always of one control: rows, verdicts, tables and SUMMARY blocks are never
pooled across them.
"""

from __future__ import annotations

from typing import Any

from stats.core import significance

REPEAT, TEXT = "repeat", "text"
CONTROLS = (REPEAT, TEXT)
SUPERVISION = "cross-task supervision"
TEXT_EXPOSURE = "text exposure"

# the question each control answers, as SUMMARY and the tables name it
QUESTION = {
    REPEAT: "repeat control (the task's own data repeated to the multi-task job's tokens): "
            "transfer vs data exposure",
    TEXT: "text-matched control (the multi-task job's batches, the other tasks' text as "
          "unlabelled masked-LM input, no cross-task labels): cross-task supervision vs text "
          "exposure",
}
_WORDS = {TEXT: {significance.GENUINE: SUPERVISION, significance.EXPOSURE: TEXT_EXPOSURE}}


def control_of(config: dict[str, Any] | None) -> str:
    """A token-controlled job's control from its config (absent: the default, repeat)."""
    kind = ((config or {}).get("control") or {}).get("kind", REPEAT)
    return kind if kind in CONTROLS else REPEAT


def verdict_words(verdict: str | None, control: str | None) -> str | None:
    """The verdict as this control's question words it (repeat: unchanged)."""
    return _WORDS.get(control or REPEAT, {}).get(verdict, verdict)


def rule_text(control: str, rule: str) -> str:
    """The verdict rule as this control states it (the repeat control's is the rule)."""
    if control == REPEAT:
        return rule
    return (f"{rule} For the text-matched control the same rule reads 'cross-task supervision' "
            f"for genuine transfer and 'text exposure' for data exposure: its TC saw the "
            f"other tasks' text, as many real tokens of each as MT did, without their labels.")


def reconcile(repeat: str | None, text: str | None) -> str:
    """One sentence on a task that both controls compared (their verdicts as worded)."""
    if repeat == significance.GENUINE and text == SUPERVISION:
        return ("both controls agree: MT beats its own data repeated and the other tasks' "
                "text without labels, so the other tasks' supervision transfers")
    if repeat == significance.GENUINE and text == TEXT_EXPOSURE:
        return ("MT beats its own data repeated but not the other tasks' text without labels: "
                "the gain is explained by in-domain text exposure, not cross-task labels")
    if repeat == significance.EXPOSURE and text == SUPERVISION:
        return ("MT beats the other tasks' text without labels but not its own data repeated: "
                "the labels add over their text, yet no more than more passes over the task's "
                "own data")
    if repeat == significance.EXPOSURE and text == TEXT_EXPOSURE:
        return ("neither control is beaten: the gain is explained by exposure, to the task's "
                "own data repeated and to the other tasks' text alike")
    return (f"the repeat control says {repeat or 'n/a'!r} and the text-matched control "
            f"{text or 'n/a'!r}: only a control whose verdict is a transfer or an exposure "
            f"answers its question here")


def reconciliations(families: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, multi-task system, task) compared under both controls: the verdicts
    (each token-controlled experiment's) and the sentence."""
    by_cell: dict[tuple, dict[str, list]] = {}
    for fam in families:
        control = fam.get("control")
        if control not in CONTROLS or fam.get("token_controlled_experiment") is None:
            continue
        for r in fam["rows"]:
            if "parity_summary" in r:
                key = (fam["model"], fam["multi_task_experiment"], r["task"])
                by_cell.setdefault(key, {}).setdefault(control, []).append(
                    (fam["token_controlled_experiment"], r["verdict"]))
    out = []
    for (model, e_m, task), found in by_cell.items():
        if REPEAT in found and TEXT in found:
            for e_r, v_r in found[REPEAT]:
                for e_t, v_t in found[TEXT]:
                    out.append({"model": model, "multi_task_experiment": e_m, "task": task,
                                "repeat": {"experiment": e_r, "verdict": v_r},
                                "text": {"experiment": e_t, "verdict": v_t},
                                "sentence": reconcile(v_r, v_t)})
    return out
