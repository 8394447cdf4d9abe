"""TensLoRA+ rank allocation: heterogeneous per-mode ranks from a trained adapter's spectra.

Torch-free on purpose: the dashboard's "suggested ranks" panel and the ``allocate`` sweep preset
run it inside the service, which must not import torch. The spectra come from
``tenslora.analysis.signals.mode_spectra`` on the training side (or from the streamed metrics).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.methods import PROJECTIONS, Shape, get_method
from tenslora.core.regimes import predict_parameters

#: A mode at least this much of whose energy is in its top singular value is redundant.
SHRINK_TOP1 = 0.9
#: Modes with at least this normalised SVD entropy may grow into the budget that is left.
GROW_ENTROPY = 0.5


def _budget_parameters(method: str, factorization: str, ranks: Sequence[int],
                       shape: Shape) -> int:
    config = AdapterConfig(method, factorization, ranks=list(ranks),
                           projections=PROJECTIONS[: shape.n_projections])
    return predict_parameters(config, shape.d_model, shape.n_layers, shape.n_heads)


def _largest_shared_rank(method: str, factorization: str, budget: int, shape: Shape) -> int:
    """CP and LoRA have one rank for every mode: the largest whose count fits the budget."""
    order = get_method(method).order
    rank = 0
    while _budget_parameters(method, factorization, [rank + 1] * order, shape) <= budget:
        rank += 1
        if rank >= shape.d_model:
            break
    if rank == 0:
        raise ValueError(f"budget {budget:,} is below the smallest {method} adapter (rank 1)")
    return rank


def allocate_ranks(
    spectra: Mapping[str, Mapping[str, Any]],
    method: str,
    budget: int,
    d_model: int,
    n_layers: int,
    n_heads: int,
    *,
    factorization: str = "tucker",
    n_projections: int = 3,
    shrink_top1: float = SHRINK_TOP1,
    grow_entropy: float = GROW_ENTROPY,
) -> dict[str, int]:
    """TensLoRA+ heterogeneous ranks from the spectra of a trained adapter.

    - A mode whose top-1 energy is at least ``shrink_top1`` is redundant: it drops to rank 1 when
      its effective rank is below 1.5, else to 2 (never above its current rank).
    - Modes with a normalised entropy of at least ``grow_entropy`` then grow one rank at a time,
      the highest ``entropy_norm x current / starting rank`` first (so growth spreads out), each
      step only while the parameter count (``predict_parameters``) stays within ``budget`` and
      no mode exceeds its size.
    - If the starting ranks already exceed the budget, the lowest-entropy modes shrink first.
    The current rank of a mode is ``spectra[mode]["rank"]`` or its number of singular values.
    CP and LoRA share one rank across modes: they get the largest that fits the budget.
    """
    m = get_method(method)
    shape = Shape(d_model, n_layers, n_heads, n_projections)
    if factorization == "cp" or not m.is_tensor:
        rank = _largest_shared_rank(method, factorization, budget, shape)
        return dict.fromkeys(m.modes, rank)
    missing = [mode for mode in m.modes if mode not in spectra]
    if missing:
        raise ValueError(f"spectra lack the modes {missing} of method {method!r}")
    sizes = dict(zip(m.modes, m.mode_sizes(shape), strict=True))
    start = {mode: int(spectra[mode].get("rank") or len(spectra[mode]["singular_values"]))
             for mode in m.modes}
    entropy = {mode: _finite(spectra[mode]["entropy_norm"]) for mode in m.modes}
    ranks = dict(start)
    shrunk = set()
    for mode in m.modes:
        if _finite(spectra[mode]["top1_energy"]) >= shrink_top1:
            target = 1 if _finite(spectra[mode]["effective_rank"], 1.0) < 1.5 else 2
            ranks[mode] = min(ranks[mode], target)
            shrunk.add(mode)

    def cost(candidate: Mapping[str, int]) -> int:
        return _budget_parameters(method, factorization, [candidate[x] for x in m.modes], shape)

    _shrink_to_budget(ranks, entropy, budget, cost)
    growable = [x for x in m.modes if x not in shrunk and entropy[x] >= grow_entropy]
    while True:
        options = [x for x in growable if ranks[x] < sizes[x]
                   and cost({**ranks, x: ranks[x] + 1}) <= budget]
        if not options:
            return ranks
        best = max(options, key=lambda x: entropy[x] * start[x] / ranks[x])
        ranks[best] += 1


def _shrink_to_budget(ranks: dict[str, int], entropy: Mapping[str, float], budget: int,
                      cost: Any) -> None:
    while cost(ranks) > budget:
        candidates = [x for x in ranks if ranks[x] > 1]
        if not candidates:
            raise ValueError(f"budget {budget:,} is below the smallest adapter (every rank 1)")
        lowest = min(candidates, key=lambda x: (entropy[x], -ranks[x]))
        ranks[lowest] -= 1


def _finite(value: Any, default: float = 0.0) -> float:
    value = float(value)
    return value if math.isfinite(value) else default
