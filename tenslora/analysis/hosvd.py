"""HOSVD spectra of a trained adapter: what each mode of its dense update tensor holds.

The paper ends by proposing TensLoRA "as a tool for interpretability, enabling the analysis of
redundancies across modes". For every tensor of a TensLoRA adapter, the dense update
``scaling * T`` is rebuilt from its factors with tensorly (``tucker_to_tensor`` / ``cp_to_tensor``)
and each mode-n unfolding is decomposed (tensorly's unfold, then the eigenvalues of its Gram
matrix): its singular values are the HOSVD's mode spectrum. A plain LoRA adapter has no tensor,
but its q/k/v updates of every layer stack into the tensors of each of the 7 constructions
(docs/architecture.md, "The adapter math"; output feature ``j = h * d_head + a`` belongs to head
``h``, as in the backbone), so the same analysis says which construction would have compressed
it, and how far.

Statistics per mode (docs/architecture.md, "Metrics (TensLoRA+)"; computed by
:func:`tenslora.analysis.spectrum.spectrum_stats`): energies ``e = s^2 / sum(s^2)``, SVD
entropy, entropy normalised by ``log(len(s))``, top-1 energy, effective rank ``exp(entropy)``;
plus the smallest rank that keeps ``energy_kept`` (90 %) of the mode's energy. Per construction,
the Tucker ranks that keep it on every tensor, and their parameter count
(``tenslora.core.methods.method_parameters``).
An all-zero tensor (an untrained Tucker core) has no spectrum: NaN statistics, rank 0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorly as tl
import torch
from torch import nn

from tenslora.adapters.adapter import TensLoRAAdapter
from tenslora.adapters.factorization import AdapterTensor
from tenslora.analysis.spectrum import ENERGY_KEPT, spectrum_stats
from tenslora.core.finite import finite_json
from tenslora.core.methods import METHODS, TENSOR_METHODS, Method, Shape, method_parameters


@dataclass(frozen=True)
class ModeSpectrum:
    """Spectrum of one mode-n unfolding of one dense tensor."""

    mode: str
    size: int
    singular_values: tuple[float, ...]
    entropy: float
    entropy_norm: float
    top1_energy: float
    effective_rank: float
    #: Smallest rank keeping ``energy_kept`` of this mode's energy (0 for an all-zero tensor).
    rank_kept: int


@dataclass(frozen=True)
class TensorSpectra:
    """Every mode of one dense tensor; ``label`` says which projections / layers it stacks."""

    label: str
    shape: tuple[int, ...]
    modes: tuple[ModeSpectrum, ...]


@dataclass(frozen=True)
class ConstructionSpectra:
    """One construction's tensors, and the Tucker ranks that keep ``energy_kept`` on each."""

    method: str
    modes: tuple[str, ...]
    tensors: tuple[TensorSpectra, ...]
    tucker_ranks: dict[str, int]
    tucker_parameters: int

    def mode_summary(self) -> list[dict[str, Any]]:
        """Per mode: statistics averaged over the construction's tensors, and the kept rank."""
        rows = []
        for index, mode in enumerate(self.modes):
            spectra = [t.modes[index] for t in self.tensors]
            row: dict[str, Any] = {"mode": mode, "size": spectra[0].size}
            for name in ("entropy_norm", "top1_energy", "effective_rank"):
                row[name] = float(np.mean([getattr(s, name) for s in spectra]))
            row["rank_kept"] = self.tucker_ranks[mode]
            rows.append(row)
        return rows


@dataclass(frozen=True)
class AdapterSpectra:
    """The analysis of one adapter: its own tensors (TensLoRA) or all 7 constructions (LoRA)."""

    method: str
    factorization: str
    ranks: tuple[int, ...]
    backbone: dict[str, int]
    #: The analysed adapter's own parameter count (the LoRA's, for a LoRA).
    adapter_parameters: int
    energy_kept: float
    constructions: tuple[ConstructionSpectra, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; NaN (the statistics of an all-zero tensor) becomes None. Each
        construction also carries its ``summary`` (``mode_summary``), what tables show."""
        data = asdict(self)
        for construction, own in zip(data["constructions"], self.constructions, strict=True):
            construction["summary"] = own.mode_summary()
        return finite_json(data)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def adapter_mode_spectra(
    folder_or_model: str | Path | nn.Module, energy_kept: float = ENERGY_KEPT
) -> AdapterSpectra:
    """HOSVD spectra of an adapter: a folder written by ``tenslora.save_adapter``, a model with
    an adapter applied, or a ``TensLoRAAdapter``."""
    if not 0.0 < energy_kept <= 1.0:
        raise ValueError(f"energy_kept must be in (0, 1]; got {energy_kept}")
    adapter = _adapter(folder_or_model)
    config, shape = adapter.config, adapter.shape
    tensors = [adapter.tensor(i) for i in range(len(adapter.tensors))]
    dense = [config.scaling * dense_tensor(t) for t in tensors]
    if config.method_spec.is_tensor:
        constructions = [_construction(config.method_spec, dense, shape, config.projections,
                                       energy_kept)]
    else:
        updates = lora_updates(dense, shape)
        constructions = [
            _construction(METHODS[name], stack_updates(updates, METHODS[name], shape), shape,
                          config.projections, energy_kept)
            for name in TENSOR_METHODS
        ]
    return AdapterSpectra(
        method=config.method,
        factorization=tensors[0].factorization,
        ranks=config.rank_tuple(),
        backbone={"d_model": shape.d_model, "n_layers": shape.n_layers,
                  "n_heads": shape.n_heads, "n_projections": shape.n_projections},
        adapter_parameters=adapter.parameter_count(),
        energy_kept=energy_kept,
        constructions=tuple(constructions),
    )


def dense_tensor(tensor: AdapterTensor) -> np.ndarray:
    """The dense tensor of one factorized tensor, rebuilt by tensorly from its factors
    (a LoRA pair is the order-2 CP ``A B^T``)."""
    factors = [f.detach().double().cpu().numpy() for f in tensor.factors]
    if tensor.factorization == "tucker":
        assert tensor.core is not None
        core = tensor.core.detach().double().cpu().numpy()
        return np.asarray(tl.tucker_to_tensor((core, factors)))
    weights = np.ones(factors[0].shape[1])
    return np.asarray(tl.cp_to_tensor((weights, factors)))


def mode_spectrum(dense: np.ndarray, mode: int, name: str, energy_kept: float) -> ModeSpectrum:
    """Spectrum of the mode-``mode`` unfolding of ``dense`` (tensorly's unfold and SVD)."""
    s = unfolding_singular_values(dense, mode)
    stats = {k: float(v) for k, v in spectrum_stats(torch.from_numpy(s)).items()}
    energy = np.cumsum(s**2) / np.sum(s**2) if np.any(s > 0) else np.zeros_like(s)
    # The tolerance keeps rounding from asking for one more rank than a spectrum that is exactly
    # at the threshold (a rank-1 mode keeps 100 %, not 99.9999999 %).
    rank_kept = int(np.searchsorted(energy, energy_kept - 1e-9) + 1) if np.any(s > 0) else 0
    return ModeSpectrum(
        mode=name, size=dense.shape[mode], singular_values=tuple(s.tolist()),
        rank_kept=min(rank_kept, len(s)), **stats,
    )


def unfolding_singular_values(dense: np.ndarray, mode: int) -> np.ndarray:
    """Singular values (descending) of the mode-``mode`` unfolding, from the eigenvalues of its
    Gram matrix on the short side (tensorly's unfold and dot; numpy's eigvalsh: no vectors).

    Unfoldings are very wide (384 x 6912 for a MiniLM LoRA stacked as qkv_depth): the Gram matrix
    is ~10x faster than an SVD there, and its error is ~1e-15 relative to the largest singular
    value. (tensorly's own ``symeig_svd`` takes the Gram matrix of the long side.)
    """
    matrix = tl.unfold(dense, mode)
    if matrix.shape[0] > matrix.shape[1]:
        matrix = tl.transpose(matrix)
    eigenvalues = np.linalg.eigvalsh(np.asarray(tl.dot(matrix, tl.transpose(matrix))))
    return np.sqrt(np.clip(eigenvalues[::-1], 0.0, None))


def lora_updates(dense: Sequence[np.ndarray], shape: Shape) -> np.ndarray:
    """A LoRA's updates ``(L, P, d_in, d_out)`` from its pairs' dense matrices (pair ``l*P + p``,
    the order ``TensLoRAAdapter`` keeps them in)."""
    stacked = np.stack(list(dense))
    return stacked.reshape(shape.n_layers, shape.n_projections, *stacked.shape[1:])


def stack_updates(updates: np.ndarray, method: Method, shape: Shape) -> list[np.ndarray]:
    """The tensors of ``method`` built from updates ``(L, P, d_in, d_out)``, in the order
    ``TensLoRAAdapter`` holds them, each with the method's modes in order (paper section 2.2)."""
    n_layers, n_projections = updates.shape[:2]
    x = updates
    if method.split_heads:  # j = h * d_head + a: Heads slowest; the mode order is HeadDim, Heads
        x = x.reshape(*x.shape[:3], shape.n_heads, shape.d_head).swapaxes(-1, -2)
    x = np.moveaxis(x, (0, 1), (-1, -2))  # (d_in, out..., P, L)
    if method.stack_projections and method.stack_layers:
        return [x]
    if method.stack_projections:
        return [x[..., layer] for layer in range(n_layers)]
    if method.stack_layers:
        return [x[..., p, :] for p in range(n_projections)]
    return [x[..., p, layer] for layer in range(n_layers) for p in range(n_projections)]


def tensor_labels(method: Method, n_layers: int, projections: Sequence[str]) -> list[str]:
    """What each tensor of ``method`` stacks, in ``stack_updates`` order."""
    if method.stack_projections and method.stack_layers:
        return ["all"]
    if method.stack_projections:
        return [f"layer {layer}" for layer in range(n_layers)]
    if method.stack_layers:
        return [f"{p}, all layers" for p in projections]
    return [f"{p}, layer {layer}" for layer in range(n_layers) for p in projections]


def _construction(
    method: Method,
    dense: Sequence[np.ndarray],
    shape: Shape,
    projections: Sequence[str],
    energy_kept: float,
) -> ConstructionSpectra:
    labels = tensor_labels(method, shape.n_layers, projections)
    tensors = tuple(
        TensorSpectra(
            label=label,
            shape=tuple(tensor.shape),
            modes=tuple(mode_spectrum(tensor, i, mode, energy_kept)
                        for i, mode in enumerate(method.modes)),
        )
        for label, tensor in zip(labels, dense, strict=True)
    )
    ranks = {
        mode: max(1, *(t.modes[i].rank_kept for t in tensors))
        for i, mode in enumerate(method.modes)
    }
    parameters = method_parameters(method.name, "tucker", tuple(ranks.values()), shape)
    return ConstructionSpectra(method.name, method.modes, tensors, ranks, parameters)


def _adapter(source: str | Path | nn.Module) -> TensLoRAAdapter:
    if isinstance(source, TensLoRAAdapter):
        return source
    if isinstance(source, nn.Module):
        from tenslora.adapters.model import get_adapter

        return get_adapter(source)
    from tenslora.adapters.persistence import read_adapter

    return read_adapter(source)
