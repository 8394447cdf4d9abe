"""CP factorization (paper section 2.1): ``T = sum_r U_1[:, r] o U_2[:, r] o ... o U_N[:, r]``.

One rank ``R`` for every mode. The first factor (Input) starts at zero, so the adapter starts
exactly at the backbone while the other factors still receive gradients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from tenslora.adapters.factorization.base import AdapterTensor, init_factor, letters, split_modes


class CPTensor(AdapterTensor):
    factorization = "cp"

    def __init__(
        self,
        modes: Sequence[str],
        sizes: Sequence[int],
        ranks: Sequence[int],
        *,
        init: str = "orthogonal",
        generator: torch.Generator | None = None,
    ) -> None:
        if len(set(ranks)) != 1:
            raise ValueError(f"CP has one rank R for every mode; got ranks {list(ranks)}")
        super().__init__(modes, sizes, ranks)
        rank = self.ranks[0]
        self.factors.append(nn.Parameter(torch.zeros(self.sizes[0], rank)))
        for size in self.sizes[1:]:
            self.factors.append(nn.Parameter(init_factor(size, rank, init, generator)))

    @classmethod
    def stacked_up(
        cls, tensors: Sequence[AdapterTensor], output_modes: Sequence[int]
    ) -> torch.Tensor:
        """``Up[t, b, o, r] = prod_j U_j[., r]`` over every mode but Input (Hadamard products)."""
        order = len(tensors[0].sizes)
        outputs, batch = split_modes(order, output_modes)
        dims = letters(order)
        operands = [torch.stack([t.factors[m] for t in tensors]) for m in batch + outputs]
        subscripts = [f"t{dims[m]}R" for m in batch + outputs]
        result = "t" + "".join(dims[m] for m in batch + outputs) + "R"
        up = torch.einsum(",".join(subscripts) + "->" + result, *operands)
        sizes = tensors[0].sizes
        d_out = math.prod(sizes[m] for m in outputs)
        return up.reshape(len(tensors), *(sizes[m] for m in batch), d_out, tensors[0].ranks[0])
