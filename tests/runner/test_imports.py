"""Every arrow points down: runner's folders in a rank table, and the one contract between
runner and stats (GUIDE.md, "The one-way flow" and "Inside runner/ and stats/").

A module may import its own folder and any folder of a lower rank, never one above it:
lazy imports inside functions count too (they are read with ``ast``, not run).  Between the
packages: runner imports nothing from stats but ``stats.core.power`` (the plan's design
check uses the analysis's own power function), stats nothing from runner; both import the
contract package ``mtl_contract``, which imports neither, nor torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.runner.test_layers import imports_of, module_name

ROOT = Path(__file__).resolve().parents[2]

# runner's layers, top (imports the most) to bottom; a module imports only its own folder
# and lower ranks.  The CLI composes everything; a recipe composes a job from the executor's
# helpers, the training engine, the writers and the watchers; the executors run jobs; ml/ is
# the torch side; outputs/ and observe/ write and watch without torch; study/ is the
# validated manifest and its plan; data/ the tasks and files; the top-level modules (the
# error type, the job seam) sit below them all.
RANK = {
    "runner.__main__": 9, "runner.cli": 8,
    "runner.recipes": 7,
    "runner.orchestrate": 6,
    "runner.ml": 5,
    "runner.outputs": 4, "runner.observe": 4,
    "runner.study": 3,
    "runner.data": 2,
    "runner.errors": 1, "runner.jobapi": 1, "runner": 1,
}
# imports that still run up, each with why it is there; the test fails on any other, and on
# an entry here that no longer exists (so the list only shrinks)
ALLOWED_UP: set[tuple[str, str]] = set()


def layer(module: str) -> str:
    """The longest RANK key that is ``module`` or a package above it."""
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in RANK:
            return ".".join(parts[:i])
    raise KeyError(f"{module}: no rank in RANK (add its folder)")


def runner_edges() -> set[tuple[str, str]]:
    """(importer, imported module) for every runner import of every runner module, the
    imported name resolved to the deepest module that exists."""
    files = {module_name(p): p for p in (ROOT / "runner").rglob("*.py")}
    edges = set()
    for name, path in files.items():
        for m in imports_of(path):
            if m.split(".")[0] != "runner":
                continue
            while m not in files and "." in m:
                m = m.rpartition(".")[0]
            edges.add((name, m))
    return edges


def upward(edges) -> set[tuple[str, str]]:
    return {(a, b) for a, b in edges
            if layer(a) != layer(b) and RANK[layer(b)] >= RANK[layer(a)]}


def test_the_rank_check_finds_an_upward_and_a_sideways_import():
    assert upward({("runner.data.prepare.writers", "runner.study.manifest"),
                   ("runner.ml.train", "runner.orchestrate.ledger"),
                   ("runner.outputs.heldout", "runner.observe.progress"),
                   ("runner.recipes.heldout", "runner.ml.train"),
                   ("runner.ml.train", "runner.ml.batching")}) == {
        ("runner.data.prepare.writers", "runner.study.manifest"),
        ("runner.ml.train", "runner.orchestrate.ledger"),
        ("runner.outputs.heldout", "runner.observe.progress")}


def test_every_runner_module_has_a_rank():
    for p in (ROOT / "runner").rglob("*.py"):
        layer(module_name(p))


def test_no_import_runs_back_up_between_runner_folders():
    found = upward(runner_edges())
    assert found - ALLOWED_UP == set(), sorted(found - ALLOWED_UP)
    assert ALLOWED_UP - found == set(), f"gone, remove from ALLOWED_UP: {ALLOWED_UP - found}"


def package_imports(folder: str) -> dict[str, set[str]]:
    return {str(p.relative_to(ROOT)): imports_of(p) for p in (ROOT / folder).rglob("*.py")}


def test_runner_imports_nothing_from_stats_but_its_power_function():
    found = {f"{f}: {m}" for f, mods in package_imports("runner").items() for m in mods
             if m.split(".")[0] == "stats" and m not in ("stats.core.power",)
             and not m.startswith("stats.core.power.")}
    assert not found, sorted(found)


def test_stats_imports_nothing_from_runner():
    found = {f"{f}: {m}" for f, mods in package_imports("stats").items() for m in mods
             if m.split(".")[0] == "runner"}
    assert not found, sorted(found)


def test_the_contract_imports_neither_package_nor_a_heavy_library():
    found = {f"{f}: {m}" for f, mods in package_imports("mtl_contract").items() for m in mods
             if m.split(".")[0] in ("runner", "stats", "torch", "transformers", "numpy",
                                    "pandas", "scipy")}
    assert not found, sorted(found)


def test_importing_the_contract_and_stats_loads_no_torch_and_no_runner():
    code = ("import json, sys, mtl_contract.files, mtl_contract.schema, stats, stats.report\n"
            "print(json.dumps(sorted(m for m in sys.modules\n"
            "                        if m.split('.')[0] in ('torch', 'runner'))))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout) == []
