"""The names runner writes and stats reads (results/README.md is the prose of this file).

Each name is defined once, here: the runner's writers and stats' readers import it, so a
renamed file or a new schema version cannot reach one side only.
"""

from __future__ import annotations

import math
from typing import Any

# ----------------------------------------------------------------- files and folders
RESULT_FILE = "result.json"            # <job_id>/result.json, written last: the job is done
PREDICTIONS_DIR = "predictions"        # <job_id>/predictions/<task>.parquet
EVALUATION_DIR = "evaluation"          # <job_id>/evaluation/<level>.json (RQ3)
HELDOUT_DIR = "heldout"                # <job_id>/heldout/<task>/seed<k>/heldout.json (RQ2)
HELDOUT_FILE = "heldout.json"
SIMILARITY_FILE = "task_similarity.json"   # results/<study>/task_similarity.json (RQ4)
CONTAMINATION_FILE = "CONTAMINATION.json"  # data/CONTAMINATION.json (RQ1)
CHECKSUMS_FILE = "SHA256SUMS"          # `sha256sum -c` lines of the prepared data files

# ------------------------------------------------------------------ schema versions
EVALUATION_SCHEMA = "evaluation/1"
HELDOUT_SCHEMA = "heldout/1"
SIMILARITY_SCHEMA = "task_similarity/1"
CONTAMINATION_SCHEMA = "contamination/1"

# RQ3's precision levels, in display order (evaluation/<level>.json)
LEVELS = ("fp32", "fp16", "bf16", "int8", "nf4")

# -------------------------------------------------------------------------- strategies
# the strategies in the study's words (manifests, job configs, tables), and the
# experiment_type result.json records for each (the methodology's names)
ST, MT, TC = "single_task", "multi_task", "token_controlled"
EXPERIMENT_TYPE = {ST: "single_task_baseline", MT: "multi_task", TC: "token_controlled_baseline"}
STRATEGY_OF_TYPE = {kind: strategy for strategy, kind in EXPERIMENT_TYPE.items()}

# -------------------------------------------------------------- predictions parquet
STAT_KINDS = ("counts", "classes", "pairs")
# the columns each stat_spec.kind carries in predictions/<task>.parquet, beside the
# unit_id, gold and pred every file has
PREDICTION_COLUMNS = {
    "counts": ("tp", "fp", "fn"),
    "classes": ("gold_id", "pred_id"),
    "pairs": ("gold_value", "pred_value"),
}

# ------------------------------------------------------------------ bounds (bytes)
# the largest result.json / held-out / evaluation / contamination / ledger file read: the
# biggest real one is well under a megabyte; a larger file is not one of ours (a
# result.json symlinked to /dev/zero must not be read until the kernel kills us)
MAX_JSON_BYTES = 64 << 20
# a predictions parquet: the largest test set's is a few megabytes
MAX_PREDICTIONS_BYTES = 1 << 30
MAX_MANIFEST_BYTES = 16 << 20

# -------------------------------------------------------------------------- exit codes
EXIT_OK = 0
EXIT_FAILED = 1        # some job failed; the others went on
EXIT_BAD_INPUT = 2     # one line on stderr names the file, the place and what was expected
EXIT_TIME_BUDGET = 3   # time budget reached or interrupted: run the same command to resume

# ------------------------------------------------------- the manifest's [stats] table
# the options of ``python -m stats`` a study fixes in advance; ``python -m runner`` checks
# the same table when it reads the manifest, so a manifest that plans also reports.
# key -> (what it is, lowest allowed (exclusive), highest allowed (exclusive))
STATS_KEYS: dict[str, tuple[str, float, float]] = {
    "equivalence_margin": ("RQ5's equivalence margin in points", 0.0, 100.0),
}


def stats_problem(table: Any) -> tuple[str | None, str] | None:
    """(key or None, what is wrong) for a bad ``[stats]`` table, else None."""
    if not isinstance(table, dict):
        return None, "expected a table"
    for key, value in table.items():
        if key not in STATS_KEYS:
            return key, f"unknown key; expected one of: {', '.join(sorted(STATS_KEYS))}"
        what, low, high = STATS_KEYS[key]
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or not low < value < high):
            return key, f"expected {what}: a number above {low:g} and below {high:g}, got {value!r}"
    return None
