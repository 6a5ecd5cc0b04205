"""The field names results/README.md documents, read from its ``jsonc`` examples, so a contract
test checks the writer and the reader against the prose a person reads, not against a copy."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "results" / "README.md"


def jsonc_block(heading: str) -> str:
    """The first ```jsonc block after the line of results/README.md starting with ``heading``."""
    text = README.read_text(encoding="utf-8")
    start = next(m.end() for m in re.finditer(r"^.*$", text, re.MULTILINE)
                 if m.group(0).startswith(heading))
    body = text[start:]
    opening = body.index("```jsonc\n") + len("```jsonc\n")
    return body[opening:body.index("```", opening)]


def documented_keys(block: str) -> set[tuple[str, ...]]:
    """Every key of a jsonc example as its path from the top, with the example's own names
    (``("per_task", "bc2gm", "tokens")``); comments are skipped and ``...`` placeholders are
    not keys.  An object that is an array's element adds ``"[]"`` to the path."""
    keys: set[tuple[str, ...]] = set()
    stack: list[str] = []
    last: str | None = None
    i = 0
    while i < len(block):
        c = block[i]
        if block.startswith("//", i):
            i = block.find("\n", i) if "\n" in block[i:] else len(block)
            continue
        if block.startswith("/*", i):
            i = block.index("*/", i) + 2
            continue
        if c == '"':
            j = i + 1
            while block[j] != '"':
                j += 2 if block[j] == "\\" else 1
            word, i = block[i + 1:j], j + 1
            while i < len(block) and block[i] in " \t":
                i += 1
            if i < len(block) and block[i] == ":":
                keys.add(tuple(stack[1:]) + (word,))
                last = word
            continue
        if c in "{[":
            stack.append(last if last is not None else "[]")
            last = None
        elif c in "}]":
            stack.pop()
            last = None
        elif c == ",":
            last = None
        i += 1
    return keys


def children(keys: set[tuple[str, ...]], *path: str) -> set[str]:
    """The keys directly under ``path`` (one level)."""
    return {k[len(path)] for k in keys if len(k) == len(path) + 1 and k[:len(path)] == path}


def prediction_columns() -> dict[str, dict[str, str]]:
    """README's ``stat_spec.kind`` table: kind -> {column: dtype}."""
    text = README.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| ((?:`\w+`(?:, )?)+) \((\w+)[,)]", text, re.MULTILINE)
    return {kind: {c: dtype for c in re.findall(r"`(\w+)`", columns)}
            for kind, columns, dtype in rows}
