"""The statistics of a spectrum (docs/architecture.md, "Metrics (TensLoRA+)"), shared by the
training-time core spectra (:mod:`tenslora.analysis.signals`) and the HOSVD of trained adapters
(:mod:`tenslora.analysis.hosvd`).
"""

from __future__ import annotations

import math

import torch

#: Share of a mode's energy that the Tucker ranks of
#: :func:`tenslora.analysis.hosvd.adapter_mode_spectra` keep.
ENERGY_KEPT = 0.9


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
