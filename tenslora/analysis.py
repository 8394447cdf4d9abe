"""TensLoRA+ signals: per-mode gradient norms, per-mode spectra, and the rank allocator.

Definitions (DESIGN.md "Metrics (TensLoRA+)"):
- gradient norm of a mode: the L2 norm of its factor's gradient, aggregated over the method's
  tensors as the root of the sum of squares; ``Core`` for the Tucker cores;
- spectrum of a mode: singular values ``s`` of the mode-n unfolding of the Tucker core (for CP
  and LoRA, of the mode's factor matrix); energies ``e = s^2 / sum(s^2)``; SVD entropy
  ``-sum(e log e)``, also divided by ``log(len(s))``; top-1 energy ``e[0]``; effective rank
  ``exp(entropy)``.

Methods with several tensors (att: one per projection and layer) report each statistic averaged
over their tensors, and the mean spectrum. An all-zero matrix (a Tucker core at initialisation)
has no spectrum: its statistics are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tenslora.config import AdapterConfig
from tenslora.methods import PROJECTIONS, Shape, get_method
from tenslora.presets import predict_parameters

SpectrumStats = dict[str, Any]


def unfold(tensor: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-n unfolding: rows index mode ``mode``, columns every other mode."""
    return tensor.movedim(mode, 0).reshape(tensor.shape[mode], -1)


def spectrum_stats(singular_values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Statistics of spectra, batched over leading dimensions (``[..., k]`` singular values)."""
    s = singular_values.double()
    squared = s.square()
    energy = squared / squared.sum(-1, keepdim=True)  # NaN for an all-zero matrix, by design
    entropy = -torch.where(energy > 0, energy * energy.log(), torch.zeros_like(energy)).sum(-1)
    entropy = torch.where(energy.isnan().any(-1), torch.full_like(entropy, math.nan), entropy)
    k = s.shape[-1]
    entropy_norm = entropy / math.log(k) if k > 1 else torch.zeros_like(entropy) * entropy
    return {
        "entropy": entropy,
        "entropy_norm": entropy_norm,
        "top1_energy": energy[..., 0],
        "effective_rank": entropy.exp(),
    }


def matrix_spectra(matrices: Sequence[torch.Tensor]) -> SpectrumStats:
    """One mode's spectrum: averaged over matrices of one shape (one per tensor of a method)."""
    stacked = torch.stack([m.detach().float() for m in matrices])
    singular_values = torch.linalg.svdvals(stacked)
    stats = spectrum_stats(singular_values)
    result: SpectrumStats = {
        "singular_values": singular_values.mean(0).tolist(),
        **{name: float(values.mean()) for name, values in stats.items()},
    }
    result["rank"] = singular_values.shape[-1]
    return result


def tensor_mode_matrices(adapter_tensor: Any) -> dict[str, torch.Tensor]:
    """Mode name -> the matrix whose spectrum describes it (core unfolding or factor)."""
    if adapter_tensor.factorization == "tucker":
        core = adapter_tensor.core
        return {mode: unfold(core, i) for i, mode in enumerate(adapter_tensor.modes)}
    return dict(zip(adapter_tensor.modes, adapter_tensor.factors, strict=True))


def mode_spectra(model: nn.Module) -> dict[str, SpectrumStats]:
    """``{mode: {singular_values, entropy, entropy_norm, top1_energy, effective_rank, rank}}``."""
    from tenslora.model import adapter_tensors

    by_mode: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for tensor in adapter_tensors(model):
            for mode, matrix in tensor_mode_matrices(tensor).items():
                by_mode.setdefault(mode, []).append(matrix)
        return {mode: matrix_spectra(matrices) for mode, matrices in by_mode.items()}


def grad_norms(groups: Mapping[str, Sequence[torch.Tensor]]) -> dict[str, float]:
    """Root of the sum of squared gradient norms per group; 0.0 where no gradient exists yet."""
    names = list(groups)
    totals = []
    for name in names:
        grads = [p.grad.detach().float() for p in groups[name] if p.grad is not None]
        squares = [torch.linalg.vector_norm(g).square() for g in grads]
        totals.append(torch.stack(squares).sum() if squares else torch.zeros(()))
    values = torch.stack(totals).sqrt().tolist() if totals else []  # one sync for all modes
    return dict(zip(names, values, strict=True))


def mode_grad_norms(model: nn.Module) -> dict[str, float]:
    """``{mode: L2 norm of the gradient}`` over every adapter tensor; ``Core`` for the cores."""
    from tenslora.model import mode_parameters

    return grad_norms(mode_parameters(model))


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
    shrink_top1: float = 0.9,
    grow_entropy: float = 0.5,
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
