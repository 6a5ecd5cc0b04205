"""Where a key path sits in a manifest's TOML source, so that every error names its line.

``tomllib`` gives values without positions; :class:`TomlLines` scans the text once for table
headers and plain keys (best effort: enough for manifests, which use no exotic syntax).
A key path is a tuple of table names, array indices and keys: ``("experiments", 2, "tasks")``.
"""

from __future__ import annotations

import re

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_RE = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")


def _split_dotted(text: str) -> tuple[str, ...]:
    return tuple(p.strip().strip("\"'") for p in text.split("."))


class TomlLines:
    """Where a key path sits in the TOML source (best effort: plain keys and headers)."""

    def __init__(self, text: str):
        self.where: dict[tuple, int] = {}
        counters: dict[tuple, int] = {}
        table: tuple = ()
        in_multiline = False
        for no, line in enumerate(text.splitlines(), start=1):
            # skip the inside of multi-line strings (rare in manifests)
            if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                in_multiline = not in_multiline
                continue
            if in_multiline:
                continue
            m = _HEADER_RE.match(line)
            if m and "=" not in m.group(2):
                parts = _split_dotted(m.group(2))
                if m.group(1) == "[[":
                    idx = counters.get(parts, 0)
                    counters[parts] = idx + 1
                    table = parts + (idx,)
                else:
                    # [experiments.x] under an array of tables refers to its last element
                    table = parts
                self.where.setdefault(table, no)
                continue
            k = _KEY_RE.match(line)
            if k:
                self.where.setdefault(table + (k.group(1).strip("\"'"),), no)

    def line(self, path: tuple) -> int | None:
        """The line of ``path``, else of its nearest enclosing table or key that has one."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.where:
                return self.where[path[:n]]
        return None


def path_text(path: tuple) -> str:
    """A key path as the error line shows it: ``experiments[2].tasks``."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out
