"""The package layout is the design (GUIDE.md, "Inside runner/ and stats/"): torch sits below
one boundary, and the imports between runner's modules form no cycle."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "runner"
NO_TORCH = ("study", "orchestrate", "data", "outputs", "observe")   # the torch-free packages
TORCH_SIDE = ("ml", "recipes")                            # what may import torch's libraries
NO_TORCH_STATEMENT = ("recipes",)   # load torch through ml/, but never import it themselves
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "accelerate")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module an import statement of ``path`` names, at module level or in a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def runner_modules() -> dict[str, Path]:
    return {module_name(p): p for p in RUNNER.rglob("*.py")}


def importers(packages: tuple[str, ...], libraries: tuple[str, ...]) -> list[str]:
    """``file: [modules]`` for each file of ``packages`` with an import statement (at module
    level or in a function) of one of ``libraries``."""
    offenders = []
    for pkg in packages:
        for path in (RUNNER / pkg).rglob("*.py"):
            found = {m for m in imports_of(path) if m.split(".")[0] in libraries}
            if found:
                offenders.append(f"{path.relative_to(ROOT)}: {sorted(found)}")
    return offenders


def test_no_torch_package_imports_torch_anywhere():
    """Not even lazily inside a function: the torch-side call of such a package goes through
    runner.ml (e.g. the plan's LoRA rank matching), so the boundary is one folder check."""
    offenders = importers(NO_TORCH, HEAVY)
    assert not offenders, offenders


def test_recipes_have_no_torch_import_statement():
    """runner.ml is the only place torch is imported: a recipe composes ml's functions
    (runtime.pick_device, quantize.to_level, ...) and has no ``import torch`` of its own, not
    even in a function.  Recipes import ml's modules, so they do load torch: only the
    statements are checked, not the modules a recipe's import loads."""
    offenders = importers(NO_TORCH_STATEMENT, ("torch",))
    assert not offenders, offenders


def test_only_ml_and_recipes_import_torch():
    allowed = {f"runner.{p}" for p in TORCH_SIDE}
    offenders = []
    for name, path in runner_modules().items():
        if any(name == a or name.startswith(a + ".") for a in allowed):
            continue
        heavy = {m for m in imports_of(path) if m.split(".")[0] in HEAVY}
        if heavy:
            offenders.append(f"{name}: {sorted(heavy)}")
    assert not offenders, offenders


def test_importing_the_no_torch_packages_loads_no_torch():
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import runner\n"
        f"for pkg in {list(NO_TORCH)!r}:\n"
        "    p = importlib.import_module('runner.' + pkg)\n"
        "    for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.'):\n"
        "        if not m.name.endswith('__main__'):\n"
        "            importlib.import_module(m.name)\n"
        "import runner.__main__\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout) == []


def test_runner_modules_import_no_cycle():
    """Lazy imports count too: a cycle through a function body is still a cycle of ideas."""
    modules = runner_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for m in imports_of(path):
            # ``from runner.ml import checkpoint`` names runner.ml.checkpoint; a package's
            # __init__ is not an edge of its own modules' cycle
            while m and m not in modules:
                m = m.rpartition(".")[0]
            if m and m != name and not name.startswith(m + "."):
                deps.add(m)
        graph[name] = deps
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_stats_imports_nothing_from_runner():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "stats").rglob("*.py")
                 if any(m.split(".")[0] == "runner" for m in imports_of(p))]
    assert not offenders, offenders
