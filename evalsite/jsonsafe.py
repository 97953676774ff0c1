"""Turning numpy and float results into strict JSON (NaN and infinities become null); no Django."""

from __future__ import annotations

import math
from typing import Any


def to_jsonable(value: Any) -> Any:
    """Plain JSON types throughout, for reports that other tools must read without surprises."""
    import numpy as np

    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(item) for item in value.tolist()]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value
