"""The one result document every speed benchmark writes, and where it goes.

A speed benchmark prints its figures and then writes one JSON document (:func:`document`):

    {"schema": "mtl-benchmark/1", "benchmark": "<script name>", "when": UTC ISO 8601,
     "commit": git HEAD of the measured code or null, "dirty": uncommitted changes or null,
     "host": {"name", "platform", "cpus"}, "device": what ran the timed code,
     "versions": {"python", "numpy", ... every measured library already imported},
     "command": the script's argv, "goal_met": true | false | null,
     "results": the benchmark's own figures}

to ``--out FILE`` or, by default, ``benchmarks/out/<benchmark>-<UTC stamp>.json`` (the folder
is ignored by git: a new run is not evidence until someone keeps it on purpose, under
``benchmarks/evidence/``).  The measured code is the installed ``runner`` / ``stats`` (or the
checkout on ``PYTHONPATH``); the commit is read from the folder that package was imported from.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

SCHEMA = "mtl-benchmark/1"
OUT_DIR = Path(__file__).resolve().parent / "out"
# libraries whose version can change a figure; recorded when the benchmark imported them
MEASURED_LIBRARIES = ("numpy", "scipy", "pandas", "pyarrow", "torch", "transformers",
                      "seqeval", "runner", "stats")


def _git(folder: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def code_state(package: str) -> tuple[str | None, bool | None]:
    """(git HEAD, uncommitted changes?) of the checkout ``package`` was imported from;
    (None, None) outside git (an installed wheel) or without git."""
    folder = Path(importlib.import_module(package).__file__).resolve().parent
    head = _git(folder, "rev-parse", "HEAD")
    if head is None:
        return None, None
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return head.strip(), (None if status is None else bool(status.strip()))


def versions() -> dict[str, str]:
    """Python and every measured library this process has imported, by version."""
    out = {"python": platform.python_version()}
    for name in MEASURED_LIBRARIES:
        module = sys.modules.get(name)
        if module is not None:
            out[name] = str(getattr(module, "__version__", "unknown"))
    return out


def host() -> dict[str, Any]:
    return {"name": platform.node(), "platform": platform.platform(),
            "cpus": os.cpu_count()}


def cpu_device(threads: int | None = None) -> str:
    """The device string of a CPU-only benchmark: processor and the threads it may use."""
    name = platform.processor() or platform.machine()
    return f"CPU {name}" + (f", {threads} thread(s)" if threads else "")


def document(benchmark: str, results: dict[str, Any], *, device: str, package: str,
             goal_met: bool | None = None, argv: list[str] | None = None) -> dict[str, Any]:
    """The result document of one run of ``benchmark`` (see the module docstring);
    ``package``: the project package the benchmark measures ("runner" or "stats")."""
    commit, dirty = code_state(package)
    return {"schema": SCHEMA, "benchmark": benchmark,
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "commit": commit, "dirty": dirty, "host": host(), "device": device,
            "versions": versions(), "command": list(sys.argv if argv is None else argv),
            "goal_met": goal_met, "results": results}


def default_path(benchmark: str, when: str) -> Path:
    stamp = when.replace("-", "").replace(":", "").replace("+0000", "Z").replace("+00:00", "Z")
    return OUT_DIR / f"{benchmark}-{stamp}.json"


def write(doc: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write ``doc`` atomically to ``out`` or :func:`default_path`; returns the path."""
    from mtl_contract.files import atomic_write_json

    path = Path(out) if out else default_path(doc["benchmark"], doc["when"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, doc)
    return path
