"""A LoRA adapter as the manifest states it (RQ2): the ``[experiments.X.adapter]`` table,
validated into frozen settings.  No torch: a manifest is validated without it; the settings
become a peft config in runner.ml.lora.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from runner.errors import InputError

ADAPTER_KEYS = ("method", "r", "alpha", "dropout", "target_modules")
DEFAULT_TARGET_MODULES = ("query", "value")  # Hu et al. 2021's choice for attention


@dataclass(frozen=True)
class LoraSettings:
    """One LoRA adapter as the manifest states it (``[experiments.X.adapter]``)."""
    r: int  # rank of the update B @ A
    alpha: float  # scaling numerator: the update is scaled by alpha / r
    dropout: float  # dropout on the adapter input, in [0, 1)
    target_modules: tuple[str, ...]  # Linear names matched by suffix (peft's rule)
    method: str = "lora"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


def settings_from_table(table: Any, file: str | None = None,
                        where: str = "adapter") -> LoraSettings:
    """Validate a manifest's adapter table; unknown keys and wrong types are InputErrors.

    Keys: ``method = "lora"`` (optional), ``r`` (int >= 1), ``alpha`` (number > 0, default 2r),
    ``dropout`` (0 <= x < 1, default 0.1), ``target_modules`` (non-empty list of names,
    default ["query", "value"]).
    """
    if not isinstance(table, dict):
        raise InputError(file, f"expected a table, got {type(table).__name__}", where=where)
    unknown = sorted(set(table) - set(ADAPTER_KEYS))
    if unknown:
        raise InputError(file, f"unknown key(s) {', '.join(unknown)}; allowed: "
                               f"{', '.join(ADAPTER_KEYS)}", where=where)
    method = table.get("method", "lora")
    if method != "lora":
        raise InputError(file, f"only method = \"lora\" is supported, got {method!r}",
                         where=f"{where}.method")
    r = table.get("r")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise InputError(file, f"r must be an integer >= 1, got {r!r}", where=f"{where}.r")
    alpha = table.get("alpha", 2 * r)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise InputError(file, f"alpha must be a number > 0, got {alpha!r}",
                         where=f"{where}.alpha")
    dropout = table.get("dropout", 0.1)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not 0 <= dropout < 1:
        raise InputError(file, f"dropout must be in [0, 1), got {dropout!r}",
                         where=f"{where}.dropout")
    targets = table.get("target_modules", list(DEFAULT_TARGET_MODULES))
    if not isinstance(targets, list) or not targets or \
            not all(isinstance(t, str) and t for t in targets):
        raise InputError(file, f"target_modules must be a non-empty list of module names, "
                               f"got {targets!r}", where=f"{where}.target_modules")
    return LoraSettings(r=r, alpha=float(alpha), dropout=float(dropout),
                        target_modules=tuple(targets))
