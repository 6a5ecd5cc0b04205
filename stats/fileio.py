"""The one bad-input error of ``stats``, and figures written atomically.

What ``stats`` shares with the runner -- atomic writes, bounded reads, digests, the
output-folder check, exit codes -- is the contract package :mod:`mtl_contract` both import
(``stats`` never imports ``runner``: the paper must rebuild from a copied results folder
with no torch).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from mtl_contract.files import atomic_write_bytes


class StatsInputError(Exception):
    """Bad input to ``python -m stats``; ``str(err)`` is one line ``FILE: WHERE: MESSAGE``."""

    def __init__(self, file: str | os.PathLike | None, message: str, where: str | None = None):
        self.file = None if file is None else str(file)
        self.where = where
        self.message = message
        parts = [p for p in (self.file, where) if p]
        super().__init__(": ".join(parts + [message]).replace("\n", " "))


def atomic_savefig(fig: Any, path: str | os.PathLike, **kwargs: Any) -> None:
    """Save a matplotlib figure atomically (format taken from the final suffix): rendered in
    memory, then written like any other file."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip("."), **kwargs)
    atomic_write_bytes(path, buf.getvalue())
