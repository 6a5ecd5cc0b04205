"""What every result document shares: JSON-safe values."""

from __future__ import annotations

import math

import numpy as np


def json_safe(obj):
    """JSON-safe copy: NaN / inf (e.g. Pearson of a constant prediction) become null; numpy
    scalars become Python numbers."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
