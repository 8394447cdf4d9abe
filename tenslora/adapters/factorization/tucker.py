"""Tucker factorization (paper section 2.1, eq. Tucker): ``T = G x_1 U_1 x_2 U_2 ... x_N U_N``.

The core ``G`` (shape = ranks) starts at zero, so the adapter starts exactly at the backbone; the
factors ``U_i`` (``dim_i x r_i``) start orthogonal (default) or Gaussian.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from tenslora.adapters.factorization.base import AdapterTensor, init_factor, letters, split_modes


class TuckerTensor(AdapterTensor):
    factorization = "tucker"

    def __init__(
        self,
        modes: Sequence[str],
        sizes: Sequence[int],
        ranks: Sequence[int],
        *,
        init: str = "orthogonal",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(modes, sizes, ranks)
        for size, rank in zip(self.sizes, self.ranks, strict=True):
            self.factors.append(nn.Parameter(init_factor(size, rank, init, generator)))
        self.core = nn.Parameter(torch.zeros(self.ranks))

    @classmethod
    def stacked_up(
        cls, tensors: Sequence[AdapterTensor], output_modes: Sequence[int]
    ) -> torch.Tensor:
        """``Up[t, b, o, r_in] = sum G[t] x_j U_j`` over every mode but Input.

        The core is contracted with the batch factors first (the small QKV / Layers modes), then
        with the output factors, as docs/architecture.md's "The adapter math" asks.
        """
        order = len(tensors[0].sizes)
        outputs, batch = split_modes(order, output_modes)
        ranks = letters(order)
        dims = letters(2 * order)[order:]
        core = torch.stack([t.core for t in tensors])  # type: ignore[misc]
        operands: list[torch.Tensor] = [core]
        subscripts = ["t" + "".join(ranks)]
        for mode in batch + outputs:
            operands.append(torch.stack([t.factors[mode] for t in tensors]))
            subscripts.append(f"t{dims[mode]}{ranks[mode]}")
        result = "t" + "".join(dims[m] for m in batch + outputs) + ranks[0]
        up = torch.einsum(",".join(subscripts) + "->" + result, *operands)
        sizes = tensors[0].sizes
        d_out = math.prod(sizes[m] for m in outputs)
        return up.reshape(len(tensors), *(sizes[m] for m in batch), d_out, tensors[0].ranks[0])
