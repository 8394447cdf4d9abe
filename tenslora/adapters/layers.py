"""`AdaptedLinear`: a frozen ``nn.Linear`` plus one slice of a TensLoRA adapter (PEFT's
``lora.Linear`` counterpart). ``merge`` / ``unmerge`` sit side by side to show their symmetry."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from tenslora.adapters.adapter import SliceInfo, TensLoRAAdapter


class WrappedLinear(nn.Module):
    """A frozen ``nn.Linear`` behind an adapter layer, and what callers of the wrapped layer may
    still read from the wrapper (weight, bias, sizes)."""

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__()
        self.base_layer = base_layer

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features


class AdaptedLinear(WrappedLinear):
    """``y = W x + b + s * (x U_in) Up^T``, where ``Up`` is this projection's slice of the
    adapter tensor, computed once per forward pass by the owning :class:`TensLoRAAdapter`."""

    _adapter: TensLoRAAdapter

    def __init__(self, base_layer: nn.Linear, adapter: TensLoRAAdapter, info: SliceInfo) -> None:
        super().__init__(base_layer)
        # Not a submodule: the adapter is registered once, on the root model.
        object.__setattr__(self, "_adapter", adapter)
        self.info = info
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        if self.merged:
            return y
        return self._adapter.add_update(self.info, x, y)

    @torch.no_grad()
    def merge(self, delta_weight: torch.Tensor) -> None:
        if not self.merged:
            self.base_layer.weight += delta_weight.to(self.base_layer.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self, delta_weight: torch.Tensor) -> None:
        if self.merged:
            self.base_layer.weight -= delta_weight.to(self.base_layer.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return f"layer={self.info.layer}, projection={self.info.projection!r}, merged={self.merged}"
