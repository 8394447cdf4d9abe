"""JSON has no NaN or infinity: the one helper that turns them into null, for everything that
writes numbers it did not check itself (an adapter's mode analysis, a job's process, the scheduler
storing results). In the library's lowest layer so all of them may import it; imports nothing
else, so a job's child process loads it without loading pydantic."""

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
