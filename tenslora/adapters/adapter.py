"""`TensLoRAAdapter`: the tensors of one adapter, how projections map onto their slices, and the
per-forward cache that keeps the training path as cheap as a LoRA (docs/architecture.md, "The
adapter math").

Slice ``(layer l, projection p)`` of a method lives in tensor ``t`` at batch index ``b``:

- ``stack_projections`` puts q/k/v(/o) of a layer into one tensor (QKV mode, index p);
- ``stack_layers`` puts every layer into one tensor (Layers mode, index l);
- otherwise each (p, l) pair has a tensor of its own.

Per forward pass of the backbone's trunk, ``Up`` of every slice comes from one einsum over the
stacked tensors, and ``x @ U_in`` is computed once per layer for the projections that read the
same input (q, k, v), with the ``U_in`` of their distinct tensors side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from tenslora.adapters.factorization import AdapterTensor, build_tensor
from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.methods import Shape

#: Projections that read the layer's hidden states (the output projection reads the attention).
_SHARED_INPUT = ("q", "k", "v")


@dataclass(frozen=True)
class SliceInfo:
    """Where one projection's update lives: its slice, and its columns of the layer's ``x U``."""

    layer: int
    projection: str
    tensor: int
    slice_index: int
    #: Tensors whose ``U_in`` are concatenated for this projection's input group.
    group: tuple[int, ...]
    #: Key of the input group in the per-forward cache.
    group_key: tuple[int, str]
    #: Columns of this projection in ``x @ concat(U_in)``; None when the group has one tensor.
    columns: tuple[int, int] | None


@dataclass
class _ForwardCache:
    ups: tuple[torch.Tensor, ...] | None = None
    input_factors: dict[tuple[int, ...], torch.Tensor] = field(default_factory=dict)
    inputs: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


class TensLoRAAdapter(nn.Module):
    """Holds the adapter's tensors (the only trainable parameters it adds) and its layout."""

    def __init__(self, config: AdapterConfig, shape: Shape) -> None:
        super().__init__()
        self.config = config
        self.shape = shape
        method = config.method_spec
        factorization = config.factorization if method.is_tensor else "lora"
        self.sizes = method.mode_sizes(shape)
        self.ranks = config.rank_tuple()
        # Output feature j = h * d_head + a: Heads (mode 2) slowest, HeadDim (mode 1) fastest.
        self.output_modes: tuple[int, ...] = (2, 1) if method.split_heads else (1,)
        generator = None
        if config.seed is not None:
            generator = torch.Generator().manual_seed(config.seed)
        self.tensors = nn.ModuleList(
            build_tensor(
                factorization, method.modes, self.sizes, self.ranks, config.init, generator
            )
            for _ in range(method.n_tensors(shape))
        )
        # A pack swaps in a dropout that draws from the job's own generator.
        self.dropout: nn.Module = (
            nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        )
        self.slices = [
            [self._slice_info(layer, p) for p in config.projections]
            for layer in range(shape.n_layers)
        ]
        self._cache: _ForwardCache | None = None
        # Filled by tenslora.adapters.model.apply_adapter: the wrapped projections in slice order,
        # and the task head's top-level names (a plain list: they are registered where they hang
        # in the backbone).
        self.wrappers: list[Any] = []
        self.train_head = False
        self.head_names: list[str] = []

    def tensor(self, index: int) -> AdapterTensor:
        return cast(AdapterTensor, self.tensors[index])

    # -- layout --------------------------------------------------------------------------------

    def _tensor_and_batch(self, layer: int, p: int) -> tuple[int, int]:
        """(tensor index, flat batch index inside it) of projection number ``p`` of ``layer``."""
        method, n_p, n_l = self.config.method_spec, self.shape.n_projections, self.shape.n_layers
        if method.stack_projections and method.stack_layers:
            return 0, p * n_l + layer
        if method.stack_projections:
            return layer, p
        if method.stack_layers:
            return p, layer
        return layer * n_p + p, 0

    def _slices_per_tensor(self) -> int:
        method = self.config.method_spec
        return (self.shape.n_projections if method.stack_projections else 1) * (
            self.shape.n_layers if method.stack_layers else 1
        )

    def _slice_info(self, layer: int, projection: str) -> SliceInfo:
        projections = self.config.projections
        p = projections.index(projection)
        tensor, batch = self._tensor_and_batch(layer, p)
        shared = projection in _SHARED_INPUT
        siblings = [q for q in projections if (q in _SHARED_INPUT) == shared]
        group: list[int] = []
        for sibling in siblings:
            t = self._tensor_and_batch(layer, projections.index(sibling))[0]
            if t not in group:
                group.append(t)
        rank = self.ranks[0]
        offset = group.index(tensor) * rank
        return SliceInfo(
            layer=layer,
            projection=projection,
            tensor=tensor,
            slice_index=tensor * self._slices_per_tensor() + batch,
            group=tuple(group),
            group_key=(layer, "qkv" if shared else projection),
            columns=(offset, offset + rank) if len(group) > 1 else None,
        )

    # -- the fast path -------------------------------------------------------------------------

    def start_forward(self, *_: Any) -> None:
        """Forward pre-hook of the trunk: parameters may have changed since the last pass."""
        self._cache = _ForwardCache()

    def end_forward(self, *_: Any) -> None:
        """Forward hook of the trunk: drop the references the cache holds."""
        self._cache = None

    def stacked_up(self) -> torch.Tensor:
        """``Up`` of every slice, ``(n_slices, d_out, r_in)``, from one einsum."""
        cls = type(self.tensors[0])
        up = cls.stacked_up(list(self.tensors), self.output_modes)  # type: ignore[attr-defined]
        return up.reshape(-1, up.shape[-2], up.shape[-1])

    def _input_factor(self, cache: _ForwardCache, group: tuple[int, ...]) -> torch.Tensor:
        factor = cache.input_factors.get(group)
        if factor is None:
            factors = [self.tensor(t).input_factor for t in group]
            factor = factors[0] if len(factors) == 1 else torch.cat(factors, dim=1)
            cache.input_factors[group] = factor
        return factor

    def add_update(self, info: SliceInfo, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y + s * (x U_in) Up^T`` for the projection ``info`` describes."""
        return y + self.update(info, x).to(y.dtype)

    def update(self, info: SliceInfo, x: torch.Tensor,
               rows: tuple[slice, ...] | None = None) -> torch.Tensor:
        """``s * (x[rows] U_in) Up^T``: the update of projection ``info`` for the part ``rows``
        of ``x`` (all of it when None; a pack gives each job's adapter its own rows)."""
        # Outside a trunk forward (a layer called on its own) nothing may be reused.
        cache = self._cache if self._cache is not None else _ForwardCache()
        hit = cache.inputs.get(info.group_key)
        if hit is not None and hit[0] is x:
            projected = hit[1]
        else:
            own = x if rows is None else x[rows]
            projected = self.dropout(own) @ self._input_factor(cache, info.group)
            cache.inputs[info.group_key] = (x, projected)
        if info.columns is not None:
            projected = projected[..., info.columns[0] : info.columns[1]]
        if cache.ups is None:
            cache.ups = self._scaled_up().transpose(1, 2).unbind(0)
        return projected @ cache.ups[info.slice_index]

    def _scaled_up(self) -> torch.Tensor:
        up = self.stacked_up()
        return up if self.config.scaling == 1 else self.config.scaling * up

    # -- merge ---------------------------------------------------------------------------------

    @torch.no_grad()
    def delta_weights(self) -> list[list[torch.Tensor]]:
        """``s * dW`` of every projection, in ``nn.Linear`` layout (d_out x d_in), per layer."""
        up = self._scaled_up()
        return [
            [up[info.slice_index] @ self.tensor(info.tensor).input_factor.T for info in row]
            for row in self.slices
        ]

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.tensors.parameters())

    def extra_repr(self) -> str:
        c = self.config
        return f"method={c.method!r}, factorization={c.factorization!r}, ranks={c.ranks!r}"
