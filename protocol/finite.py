"""JSON has no NaN or infinity: the one helper that turns them into null, for every side that
writes JSON it did not build itself (a job's process, the scheduler storing results). Imports
nothing, so a job's child process loads it without loading pydantic."""

from __future__ import annotations

import math
from typing import Any


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float (in nested dicts, lists and tuples) made None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(item) for item in value]
    return value
