"""The metric points a run streams, with their stable names (issue 4):

``train/loss``, ``lr/<group>``, ``grad_norm/<Mode>`` (``Core`` included), ``svd_entropy/<Mode>``,
``svd_entropy_norm/<Mode>``, ``top1_energy/<Mode>``, ``eff_rank/<Mode>``, ``eval/<metric>``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

MetricPoint = dict[str, Any]  # {"step": int, "name": str, "value": float}
Sink = Callable[[list[MetricPoint]], None]

#: statistic of ``tenslora.analysis.mode_spectra`` -> metric name prefix
SPECTRUM_METRICS: dict[str, str] = {
    "entropy": "svd_entropy",
    "entropy_norm": "svd_entropy_norm",
    "top1_energy": "top1_energy",
    "effective_rank": "eff_rank",
}


def points(step: int, values: Mapping[str, float]) -> list[MetricPoint]:
    """Metric points for ``step``; non-finite values (a zero core's spectrum) are left out."""
    return [
        {"step": step, "name": name, "value": float(value)}
        for name, value in values.items()
        if math.isfinite(value)
    ]


def spectrum_values(spectra: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    return {
        f"{prefix}/{mode}": float(stats[stat])
        for mode, stats in spectra.items()
        for stat, prefix in SPECTRUM_METRICS.items()
    }


def prefixed(prefix: str, values: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}/{name}": value for name, value in values.items()}
