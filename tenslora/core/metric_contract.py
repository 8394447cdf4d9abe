"""The metric contract between a training run and its readers (service, dashboard, CLI).

One place for the names a run streams and for the two ways they are read back: "the last value of
each metric" and "the spectra of an adapter -> the rank allocator's input". Torch-free on purpose:
the service, the dashboard and the CLI import it.

Names (a ``<Mode>`` is one of ``tenslora.core.methods.MODE_NAMES`` or ``Core``):

- ``train/loss``: mean training loss since the previous log step;
- ``lr/<group>``: learning rate of each optimiser group (``tenslora.training.groups``);
- ``grad_norm/<Mode>``: per-mode gradient norm (the core's included);
- ``svd_entropy/<Mode>``, ``svd_entropy_norm/<Mode>``, ``top1_energy/<Mode>``,
  ``eff_rank/<Mode>``: per-mode spectrum of the adapter
  (``tenslora.analysis.signals.mode_spectra``);
- ``eval/<metric>``: each validation metric (accuracy, mcc, f1, loss).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tenslora.core.methods import CORE, MODE_NAMES

TRAIN_LOSS = "train/loss"
LR = "lr"
GRAD_NORM = "grad_norm"
EVAL = "eval"

#: statistic of ``tenslora.analysis.signals.mode_spectra`` -> metric name prefix
SPECTRUM_METRICS: dict[str, str] = {
    "entropy": "svd_entropy",
    "entropy_norm": "svd_entropy_norm",
    "top1_energy": "top1_energy",
    "effective_rank": "eff_rank",
}
#: The statistics ``tenslora.core.allocation.allocate_ranks`` reads; a mode lacking one has no
#: input.
ALLOCATOR_STATS: tuple[str, ...] = ("entropy_norm", "top1_energy", "effective_rank")
#: Every mode a per-mode metric can name: the tensor modes, then the Tucker core.
METRIC_MODES: tuple[str, ...] = (*MODE_NAMES, CORE)


def metric_name(prefix: str, key: str) -> str:
    """``prefix/key``: the one way a family's metric names are spelled."""
    return f"{prefix}/{key}"


def family(prefix: str) -> str:
    """The name prefix that selects every metric of a family (``grad_norm/``)."""
    return f"{prefix}/"


def prefixed(prefix: str, values: Mapping[str, float]) -> dict[str, float]:
    return {metric_name(prefix, name): value for name, value in values.items()}


def spectrum_values(spectra: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """The spectrum metrics of ``{mode: statistics}`` (``mode_spectra``'s output)."""
    return {
        metric_name(prefix, mode): float(stats[stat])
        for mode, stats in spectra.items()
        for stat, prefix in SPECTRUM_METRICS.items()
    }


def last_values(
    points: Iterable[Mapping[str, Any]], prefixes: Sequence[str] | None = None
) -> dict[str, float]:
    """The value at the largest step of each metric name (of names starting with ``prefixes``).

    A point without a value is skipped; at equal steps the later point wins.
    """
    wanted = tuple(prefixes) if prefixes is not None else None
    latest: dict[str, tuple[int, float]] = {}
    for point in points:
        name, value = point["name"], point["value"]
        if value is None or (wanted is not None and not name.startswith(wanted)):
            continue
        if name not in latest or point["step"] >= latest[name][0]:
            latest[name] = (point["step"], float(value))
    return {name: value for name, (_, value) in latest.items()}


#: The prefixes ``allocator_input`` reads (for ``last_values(points, SPECTRUM_PREFIXES)``).
SPECTRUM_PREFIXES: tuple[str, ...] = tuple(family(SPECTRUM_METRICS[s]) for s in ALLOCATOR_STATS)


def allocator_input(
    runs: Sequence[Mapping[str, float]], ranks: Mapping[str, int]
) -> dict[str, dict[str, Any]]:
    """The rank allocator's spectra of ONE adapter from the last metric values of its runs.

    ``runs`` are the runs of that adapter, one per seed (``last_values`` of each); each statistic
    is the mean over the runs that streamed it, so every seed counts once and a seed that lacks a
    mode does not drop the others. ``ranks`` are the adapter's current ranks by mode. A mode is
    left out when no run streamed all of ``ALLOCATOR_STATS`` for it (a zero core has none), so
    callers compare the modes they get with the modes they need.
    """
    spectra: dict[str, dict[str, Any]] = {}
    for mode, rank in ranks.items():
        stats: dict[str, Any] = {"rank": rank, "singular_values": []}
        for stat, prefix in SPECTRUM_METRICS.items():
            values = [v for run in runs if (v := run.get(metric_name(prefix, mode))) is not None]
            stats[stat] = sum(values) / len(values) if values else math.nan
        if all(math.isfinite(stats[stat]) for stat in ALLOCATOR_STATS):
            spectra[mode] = stats
    return spectra


# The files a trained adapter is kept as (``tenslora.save_adapter`` writes the first two; the
# service stores and serves them as one zip, with the optional analysis beside them).
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG_FILE = "adapter_config.json"
#: ``tenslora.analysis.signals.adapter_mode_spectra(...).to_dict()`` of the adapter, when computed.
ADAPTER_ANALYSIS_FILE = "adapter_analysis.json"
