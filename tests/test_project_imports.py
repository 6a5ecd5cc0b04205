"""Every import of the project's own code names a module and a name that exist, and none is
hidden behind ``except ImportError``.

The bug this guards against (issue 29): ``runner/orchestrate/workers.py`` imported the removed
``runner.ml.device`` inside a function, under ``except ImportError: return []``, so
``--workers auto`` silently saw no GPU.  A lazy import runs only on the branch that needs it
(here: a GPU machine without ``CUDA_VISIBLE_DEVICES``), which no CPU test reached; so every
import statement of every Python file is read with ``ast`` -- module level, function bodies,
``if TYPE_CHECKING`` blocks alike -- and resolved here, without running the branch.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("runner", "stats")
# every Python file of the repository (the prepared data/ holds none)
FOLDERS = ("runner", "stats", "tests", "benchmarks", "docs", "kaggle")
CATCHES_IMPORT = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def python_files() -> list[Path]:
    return sorted(p for folder in FOLDERS if (ROOT / folder).is_dir()
                  for p in (ROOT / folder).rglob("*.py"))


def _package_of(path: Path) -> str | None:
    """The dotted package ``path`` belongs to (for relative imports), None outside one."""
    rel = path.relative_to(ROOT).with_suffix("").parts
    parts = list(rel[:-1])
    return ".".join(parts) if parts and parts[0] in PROJECT + ("tests",) else None


def project_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name) for each project import of ``path``: ``import runner.x`` gives
    (line, "runner.x", None); ``from runner.x import y`` gives (line, "runner.x", "y")."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names
                    if a.name.split(".")[0] in PROJECT]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                package = _package_of(path)
                if package is None:
                    continue
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(anchor + ([module] if module else []))
            if module.split(".")[0] in PROJECT:
                out += [(node.lineno, module, a.name) for a in node.names]
    return out


def unresolved(module: str, name: str | None) -> str | None:
    """Why ``module`` (and ``name`` from it) cannot be imported; None when it can."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError as exc:   # a parent package is missing
        return f"no module {exc.name}"
    if spec is None:
        return f"no module {module}"
    if name is None or name == "*":
        return None
    if spec.submodule_search_locations and \
            importlib.util.find_spec(f"{module}.{name}") is not None:
        return None   # from package import submodule
    if not hasattr(importlib.import_module(module), name):
        return f"{module} has no {name}"
    return None


def test_every_project_import_resolves_to_a_module_and_name_that_exist():
    problems = []
    for path in python_files():
        for line, module, name in project_imports(path):
            why = unresolved(module, name)
            if why:
                problems.append(f"{path.relative_to(ROOT)}:{line}: {why}")
    assert not problems, "\n".join(problems)


def test_the_check_finds_a_missing_module_and_a_missing_name(tmp_path):
    """The check itself: the very import issue 29 found, and its kin."""
    assert unresolved("runner.ml.device", "cuda_device_count") == "no module runner.ml.device"
    assert unresolved("runner.ml.runtime", "cuda_device_count") is None
    assert unresolved("runner.ml.runtime", "no_such_name") == "runner.ml.runtime has no no_such_name"
    assert unresolved("runner.nowhere.deeper", None) == "no module runner.nowhere"
    assert unresolved("runner.ml", "runtime") is None          # a submodule of a package
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    try:\n        from runner.ml.device import x\n"
                    "    except ImportError:\n        return []\n")
    assert project_imports(lazy) == [(3, "runner.ml.device", "x")]
    assert hidden_project_imports(lazy) == [3]


def hidden_project_imports(path: Path) -> list[int]:
    """Lines of project imports inside a ``try`` whose handler catches ImportError (or a
    broader class): there a missing module reads as an optional library being absent."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Try):
            continue
        caught = set()
        for handler in node.handlers:
            types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            caught |= {t.id if isinstance(t, ast.Name) else getattr(t, "attr", "")
                       for t in types if t is not None}
            if handler.type is None:
                caught.add("BaseException")
        if not caught & CATCHES_IMPORT:
            continue
        for stmt in node.body:
            lines += [inner.lineno for inner in ast.walk(stmt) if _imports_project(inner)]
    return lines


def _imports_project(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(a.name.split(".")[0] in PROJECT for a in node.names)
    if isinstance(node, ast.ImportFrom):   # a relative import is the project's own
        return bool(node.level) or (node.module or "").split(".")[0] in PROJECT
    return False


def test_no_project_import_is_caught_as_an_optional_library():
    offenders = [f"{p.relative_to(ROOT)}:{line}" for p in python_files()
                 for line in hidden_project_imports(p)]
    assert not offenders, offenders


@pytest.mark.parametrize("folder", ["runner", "stats"])
def test_every_package_folder_is_a_package(folder):
    """A folder of modules without __init__.py would import as a namespace package here and
    be left out of an installed wheel."""
    missing = [str(d.relative_to(ROOT)) for d in (ROOT / folder).rglob("*")
               if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))
               and not (d / "__init__.py").exists()]
    assert not missing, missing
