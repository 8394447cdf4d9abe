"""The "suggested ranks" panel: the TensLoRA+ rank allocator fed with a run's last spectra.

The allocator (``tenslora.allocation``) is torch-free, so the server runs it in-process; the panel
says why it is empty instead of failing the page when the run's spectra are missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tenslora.allocation import allocate_ranks
from tenslora.catalog import BACKBONES
from tenslora.config import AdapterConfig
from tenslora.presets import predict_parameters

log = logging.getLogger(__name__)


@dataclass
class Suggestion:
    ranks: dict[str, int] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    budget: int | None = None
    reason: str = ""
    current_params: int | None = None
    suggested_params: int | None = None


def backbone_dims(backbone: str) -> tuple[int, int, int] | None:
    info = BACKBONES.get(backbone)
    return None if info is None else (info.d_model, info.n_layers, info.n_heads)


def last_values(points: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The value at the largest step of each metric name."""
    latest: dict[str, tuple[int, float]] = {}
    for point in points:
        step, name = point["step"], point["name"]
        if point["value"] is not None and (name not in latest or step >= latest[name][0]):
            latest[name] = (step, point["value"])
    return {name: value for name, (_, value) in latest.items()}


def spectra_from_metrics(last: Mapping[str, float], current: Mapping[str, int]) -> dict[str, Any]:
    """Rebuild the allocator's spectra input from the streamed ``*/<Mode>`` metrics."""
    spectra = {}
    for mode, rank in current.items():
        names = {
            "entropy": f"svd_entropy/{mode}", "entropy_norm": f"svd_entropy_norm/{mode}",
            "top1_energy": f"top1_energy/{mode}", "effective_rank": f"eff_rank/{mode}",
        }
        if f"svd_entropy_norm/{mode}" not in last or f"top1_energy/{mode}" not in last:
            continue
        spectra[mode] = {key: last.get(name, float("nan")) for key, name in names.items()}
        spectra[mode]["rank"] = rank
    return spectra


def suggest(
    config: Mapping[str, Any] | None,
    result: Mapping[str, Any] | None,
    points: Sequence[Mapping[str, Any]],
    allocator: Callable[..., dict[str, int]] = allocate_ranks,
) -> Suggestion:
    """Ranks for the next run of this configuration within its parameter budget."""
    if not config or config.get("kind") != "train":
        return Suggestion(reason="Only training runs have spectra to allocate ranks from.")
    try:
        adapter = AdapterConfig.from_dict(config.get("adapter") or {})
    except (TypeError, ValueError) as exc:
        return Suggestion(reason=f"The run's adapter config is not readable: {exc}")
    dims = backbone_dims(str(config.get("backbone")))
    if dims is None:
        return Suggestion(reason=f"Unknown dimensions of backbone {config.get('backbone')!r}.")
    current = adapter.mode_ranks()
    spectra = spectra_from_metrics(last_values(points), current)
    if set(spectra) != set(current):
        return Suggestion(current=current, reason="No spectra streamed for this run yet.")
    budget = int((result or {}).get("adapter_params") or predict_parameters(adapter, *dims))
    try:
        ranks = allocator(spectra, adapter.method, budget, *dims,
                         factorization=adapter.factorization,
                         n_projections=adapter.n_projections)
    except Exception as exc:  # the panel is advice: never let it break the page
        log.warning("rank allocator failed: %s", exc)
        return Suggestion(current=current, budget=budget, reason=f"The allocator failed: {exc}")
    suggested = AdapterConfig.from_dict({**adapter.to_dict(),
                                         "ranks": [ranks[mode] for mode in adapter.modes]})
    return Suggestion(ranks=dict(ranks), current=current, budget=budget,
                      current_params=predict_parameters(adapter, *dims),
                      suggested_params=predict_parameters(suggested, *dims))
