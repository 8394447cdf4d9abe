"""The "suggested ranks" panel: the TensLoRA+ rank allocator fed with a run's last spectra.

The allocator (``tenslora.core.allocation``) is torch-free, so the server runs it in-process;
its input comes from the streamed metrics through ``tenslora.core.metric_contract``. The panel says
why it is empty instead of failing the page when the run's spectra are missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.allocation import allocate_ranks
from tenslora.core.catalog import BACKBONES
from tenslora.core.metric_contract import SPECTRUM_PREFIXES, allocator_input, last_values
from tenslora.core.regimes import predict_parameters

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
    # The panel is about this one run: the allocator input of an adapter averaged over just it.
    spectra = allocator_input([last_values(points, SPECTRUM_PREFIXES)], current)
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
