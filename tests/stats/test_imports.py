"""The shape of stats/: imports point one way (no cycle), and nothing pulls in torch or the
runner (stats rebuilds the paper from copied result files alone)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

STATS = Path(__file__).resolve().parents[2] / "stats"


def module_name(path: Path) -> str:
    parts = path.relative_to(STATS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stats_imports(path: Path, modules: set[str]) -> set[str]:
    """The stats modules ``path`` imports (``from stats.x import y`` counts ``stats.x.y`` when
    that is a module, else ``stats.x``), at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                     else node.module for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in STATS.rglob("*.py")}
    modules = set(files)
    return {m: stats_imports(p, modules) - {m} for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path a -> ... -> a, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_stats_has_no_import_cycle():
    graph = import_graph()
    assert "stats.report" in graph and "stats.questions.rq2" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_layers_import_only_downwards():
    """read/ <- core/ <- render/ <- questions/ <- report: a layer never imports one above it
    (fileio, the error and atomic-write helpers, sits below them all)."""
    rank = {"stats.fileio": 0, "stats.read": 1, "stats.core": 2, "stats.render": 3,
            "stats.questions": 4, "stats.report": 5, "stats.__main__": 6}

    def layer(m: str) -> int:
        return max(r for prefix, r in rank.items() if m == prefix or m.startswith(prefix + "."))

    upward = [(m, n) for m, deps in import_graph().items() if m != "stats"
              for n in deps if n != "stats" and layer(n) > layer(m)]
    assert upward == []


def test_stats_modules_do_not_import_torch_or_runner():
    mods = sorted(m for m in import_graph() if m != "stats.__main__")
    code = (f"import sys, importlib; [importlib.import_module(m) for m in {mods!r}]; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'runner')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
