"""``python -m runner.data.prepare --source DIR --out data/`` (same as ``python -m runner prepare``)."""

import sys

from runner.data.prepare import main

sys.exit(main())
