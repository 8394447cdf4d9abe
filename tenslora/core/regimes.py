"""Parameter counts and the paper's rank presets (section 4.3). Torch-free."""

from __future__ import annotations

from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.methods import (
    DEFAULT_PROJECTIONS,
    HEADS,
    LAYERS,
    QKV,
    Shape,
    get_method,
    method_parameters,
)

#: The rank regime of a preset row (the job spec's ``regime``): the LoRA baseline, the paper's two
#: regimes of a tensor construction, or a related method of Table 1 at the LoRA budget.
LORA_REGIME, ISORANK, ISOPARAMETERS, RELATED = "lora", "isorank", "isoparameters", "related"
REGIMES: tuple[str, ...] = (LORA_REGIME, ISORANK, ISOPARAMETERS, RELATED)


def predict_parameters(config: AdapterConfig, d_model: int, n_layers: int, n_heads: int) -> int:
    """Trainable parameters of the adapter ``config`` describes on a backbone of these sizes.

    Agrees exactly with ``count_adapter_parameters`` of a model the adapter was applied to.
    """
    shape = Shape(d_model, n_layers, n_heads, config.n_projections)
    return method_parameters(config.method, config.factorization, config.rank_tuple(), shape)


def isorank(method: str, lora_rank: int) -> tuple[int, ...]:
    """Every mode at the LoRA rank: the lowest-parameter regime of the paper."""
    return (lora_rank,) * get_method(method).order


def _fixed_rank(mode: str, shape: Shape) -> int | None:
    """Modes whose isoparameters rank is their full size (QKV, Heads, Layers)."""
    return {QKV: shape.n_projections, HEADS: shape.n_heads, LAYERS: shape.n_layers}.get(mode)


def isoparameters(
    method: str,
    lora_rank: int,
    d_model: int,
    n_layers: int,
    n_heads: int,
    *,
    factorization: str = "tucker",
    n_projections: int = len(DEFAULT_PROJECTIONS),
) -> tuple[int, ...]:
    """Ranks whose parameter count is closest to LoRA's at ``lora_rank`` (paper section 4.3).

    QKV, Heads and Layers take their full size. The other modes (Input, Output or HeadDim)
    share one rank ``r``, each clamped to its own size, so modes of equal size get equal ranks and
    larger modes never get smaller ones; ``r`` grows from 1 until the count is closest to LoRA's
    (ties go to the smaller count). CP has one rank for all modes, chosen the same way.
    """
    shape = Shape(d_model, n_layers, n_heads, n_projections)
    m = get_method(method)
    target = method_parameters("lora", "tucker", (lora_rank, lora_rank), shape)
    if not m.is_tensor:
        return (lora_rank, lora_rank)
    sizes = m.mode_sizes(shape)

    def ranks_for(r: int) -> tuple[int, ...]:
        if factorization == "cp":
            return (r,) * m.order
        return tuple(
            _fixed_rank(mode, shape) or min(r, size)
            for mode, size in zip(m.modes, sizes, strict=True)
        )

    best = ranks_for(1)
    best_gap = abs(method_parameters(method, factorization, best, shape) - target)
    for r in range(2, max(sizes) + 1):
        ranks = ranks_for(r)
        gap = abs(method_parameters(method, factorization, ranks, shape) - target)
        if gap < best_gap:
            best, best_gap = ranks, gap
        if method_parameters(method, factorization, ranks, shape) > target:
            break
    return best
