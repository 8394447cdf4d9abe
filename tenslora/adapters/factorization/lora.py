"""Plain LoRA (Hu et al.): ``dW = A B^T`` with ``A`` (Input, ``d_in x r``) and ``B`` (Output,
``d_out x r``). ``B`` starts at zero, as in the LoRA paper."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tenslora.adapters.factorization.base import AdapterTensor, init_factor


class LoraPair(AdapterTensor):
    factorization = "lora"

    def __init__(
        self,
        modes: Sequence[str],
        sizes: Sequence[int],
        ranks: Sequence[int],
        *,
        init: str = "orthogonal",
        generator: torch.Generator | None = None,
    ) -> None:
        if len(modes) != 2 or len(set(ranks)) != 1:
            raise ValueError(f"LoRA has two modes of one rank; got {list(modes)}, {list(ranks)}")
        super().__init__(modes, sizes, ranks)
        self.factors.append(
            nn.Parameter(init_factor(self.sizes[0], self.ranks[0], init, generator))
        )
        self.factors.append(nn.Parameter(torch.zeros(self.sizes[1], self.ranks[1])))

    @classmethod
    def stacked_up(
        cls, tensors: Sequence[AdapterTensor], output_modes: Sequence[int]
    ) -> torch.Tensor:
        """``Up = B`` for every pair: ``(len(tensors), d_out, r)``."""
        if list(output_modes) != [1]:
            raise ValueError(f"LoRA's only output mode is 1; got {list(output_modes)}")
        return torch.stack([t.factors[1] for t in tensors])
