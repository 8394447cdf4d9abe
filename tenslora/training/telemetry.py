"""The metric points a run streams; their names are the contract of
``tenslora.core.metric_contract``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from tenslora.core.metric_contract import prefixed, spectrum_values

__all__ = ["MetricPoint", "Sink", "points", "prefixed", "spectrum_values"]

MetricPoint = dict[str, Any]  # {"step": int, "name": str, "value": float}
Sink = Callable[[list[MetricPoint]], None]


def points(step: int, values: Mapping[str, float]) -> list[MetricPoint]:
    """Metric points for ``step``; non-finite values (a zero core's spectrum) are left out."""
    return [
        {"step": step, "name": name, "value": float(value)}
        for name, value in values.items()
        if math.isfinite(value)
    ]
