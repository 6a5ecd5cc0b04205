"""What every result document records about the code that wrote it."""

from __future__ import annotations

import datetime as _dt
import subprocess
from pathlib import Path

import runner


def now() -> str:
    """UTC, to the second, ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    """HEAD of the checkout the runner runs from; None outside git or when git is absent."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(runner.__file__).parent,
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None
