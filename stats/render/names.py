"""Short names for long system labels, with the key that spells them out.

A multi-task experiment with several task sets names its systems ``<experiment>[a+b+...]``
(:class:`stats.core.study.Study`); with the methodology's all-8 set that is 60+
characters, too long for a table row, a legend or a 100-character SUMMARY line. The set of
every task of the study is written ``[all N]``; a label still longer than :data:`LONGEST`
keeps its experiment and the set's size (``mt[5 tasks #2]``, numbered where two would read
alike). Every shortened label is listed in :meth:`Names.key`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

LONGEST = 28  # characters a label may have before it is shortened
_SET = re.compile(r"^(?P<exp>[^\[]+)\[(?P<tasks>[^\]]+)\]$")


class Names:
    """label -> short label for the labels of one report (``tasks``: every task studied)."""

    def __init__(self, labels: Iterable[str | None], tasks: Iterable[str]) -> None:
        every = sorted(set(tasks))
        self.short: dict[str, str] = {}
        self.used: set[str] = set()
        taken: dict[str, int] = {}
        for label in sorted({x for x in labels if x}):
            m = _SET.match(label)
            short = label
            if m is not None:
                members = m["tasks"].split("+")
                if len(every) > 2 and sorted(members) == every:
                    short = f"{m['exp']}[all {len(every)}]"
                elif len(label) > LONGEST:
                    short = f"{m['exp']}[{len(members)} tasks]"
            elif len(label) > LONGEST:
                short = label[:LONGEST - 1] + "…"
            if short != label:
                taken[short] = taken.get(short, 0) + 1
                if taken[short] > 1:
                    short = short.rstrip("]") + f" #{taken[short]}]" if short.endswith("]") \
                        else f"{short} #{taken[short]}"
            self.short[label] = short

    def __call__(self, label: str | None) -> str:
        """The short form of ``label`` (itself when it is short already or unknown)."""
        if label is None:
            return "--"
        self.used.add(label)
        return self.short.get(label, label)

    def key(self, used_only: bool = False) -> list[tuple[str, str]]:
        """(short, full) for every label that was shortened (``used_only``: and was asked
        for), in order of the short form."""
        return sorted((s, f) for f, s in self.short.items()
                      if s != f and (f in self.used or not used_only))


def set_size(label: str | None) -> int:
    """How many tasks a system label's set names (``mt[a+b]`` -> 2); 0 without a set."""
    m = _SET.match(label or "")
    return len(m["tasks"].split("+")) if m else 0
