"""TensLoRA+ training-time signals: per-mode gradient norms and per-mode spectra of the cores.

Definitions (docs/architecture.md, "Metrics (TensLoRA+)"):
- gradient norm of a mode: the L2 norm of its factor's gradient, aggregated over the method's
  tensors as the root of the sum of squares; ``Core`` for the Tucker cores;
- spectrum of a mode: singular values ``s`` of the mode-n unfolding of the Tucker core (for CP
  and LoRA, of the mode's factor matrix); energies ``e = s^2 / sum(s^2)``; SVD entropy
  ``-sum(e log e)``, also divided by ``log(len(s))``; top-1 energy ``e[0]``; effective rank
  ``exp(entropy)``.

The HOSVD spectra of a whole trained adapter's dense tensors (and of a LoRA's updates stacked into
each construction) are :func:`tenslora.analysis.hosvd.adapter_mode_spectra` (with tensorly); the
rank allocator that reads these spectra is torch-free, in :mod:`tenslora.core.allocation`.

Methods with several tensors (att: one per projection and layer) report each statistic averaged
over their tensors, and the mean spectrum. An all-zero matrix (a Tucker core at initialisation)
has no spectrum: its statistics are NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tenslora.adapters.model import adapter_tensors, mode_parameters
from tenslora.analysis.spectrum import spectrum_stats, unfold

SpectrumStats = dict[str, Any]

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
    return grad_norms(mode_parameters(model))
