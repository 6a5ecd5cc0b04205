"""``python -m runner``: the command line is runner/cli/ (``python -m runner --help``)."""

import sys

from runner.cli import main

if __name__ == "__main__":
    sys.exit(main())
