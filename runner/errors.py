"""The one error type for bad input: a file, a place in it, and what was expected.

Every command catches :class:`InputError` at its entry point, prints ``str(err)`` as one
line on stderr and exits with code 2 (``EXIT_BAD_INPUT``; the exit codes are
``mtl_contract.schema``'s, shared with ``python -m stats``).  Nothing below the parsers sees
raw, unchecked input.
"""

from __future__ import annotations

# the longest error line printed (characters): a message quoting a 5 MB manifest value is
# cut here, with how long it was
MAX_LINE = 1000


class InputError(Exception):
    """Bad user input: a manifest, a data file, a checkpoint, a pickle.

    ``str(err)`` is one line: ``FILE[:LINE]: WHERE: MESSAGE`` (parts that are unknown are
    left out), so the user sees which file, which key/row/line, and what was expected.
    """

    def __init__(self, file: str | None, message: str, where: str | None = None,
                 line: int | None = None):
        self.file = None if file is None else str(file)
        self.where = where
        self.line = line
        self.message = message
        super().__init__(self.format())

    def format(self) -> str:
        head = ""
        if self.file:
            head = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [p for p in (head, self.where) if p]
        line = ": ".join(parts + [self.message]).replace("\n", " ")
        if len(line) > MAX_LINE:
            line = f"{line[:MAX_LINE]}... (cut: {len(line):,} characters)"
        return line
