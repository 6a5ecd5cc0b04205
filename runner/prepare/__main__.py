"""``python -m runner.prepare --source DIR --out data/`` (same as ``python -m runner prepare``)."""

import sys

from runner.prepare import main

sys.exit(main())
