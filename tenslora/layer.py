"""`AdaptedLinear`: a frozen ``nn.Linear`` plus one slice of a TensLoRA adapter (PEFT's
``lora.Linear`` counterpart). ``merge`` / ``unmerge`` sit side by side to show their symmetry.

`PackedLinear`: a frozen ``nn.Linear`` shared by the k jobs of a pack, each adding its own
adapter's update to its own rows of the batch (DESIGN.md, "Packs")."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from tenslora.adapter import SliceInfo, TensLoRAAdapter
    from tenslora.pack import PackState


class _WrappedLinear(nn.Module):
    """What callers of the wrapped ``nn.Linear`` may still read from the wrapper."""

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


class AdaptedLinear(_WrappedLinear):
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


class PackedLinear(_WrappedLinear):
    """``y = W x + b``, plus, on the rows of each job of the pack that adapts this projection,
    that job's ``s * (x U_in) Up^T`` (mLoRA's BatchLoRA: one frozen matmul, a slice per job)."""

    _pack: PackState

    def __init__(self, base_layer: nn.Linear, pack: PackState,
                 slices: dict[int, SliceInfo]) -> None:
        super().__init__(base_layer)
        object.__setattr__(self, "_pack", pack)  # shared by every packed module, not a child
        #: job index -> where this projection's update lives in that job's adapter
        self.slices = slices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        updates: list[torch.Tensor | None] = []
        for position, (job, _rows) in enumerate(self._pack.active):
            info = self.slices.get(job)
            if info is None:
                updates.append(None)
                continue
            # At the job's own length: the shapes, hence the rounding, of the job alone.
            own, padding = self._pack.own(position, x)
            update = self._pack.adapter(job).update(info, x, own)
            updates.append(F.pad(update, (0, 0, 0, padding)) if padding else update)
        if all(u is None for u in updates):
            return y
        if len(updates) == 1:
            return y + updates[0].to(y.dtype)  # type: ignore[union-attr]
        full = [
            y.new_zeros((rows.stop - rows.start, *y.shape[1:])) if u is None else u.to(y.dtype)
            for u, (_, rows) in zip(updates, self._pack.active, strict=True)
        ]
        return y + torch.cat(full)

    def extra_repr(self) -> str:
        return f"jobs={sorted(self.slices)}"
