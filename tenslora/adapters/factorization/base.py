"""The common interface of a factorized adapter tensor.

A tensor ``T`` has modes ``(Input, out_1, ..., out_k, batch_1, ...)``: mode 0 is the input
dimension of the projections, the *output modes* flatten into the output feature of a projection,
and the remaining *batch modes* (QKV, Layers) pick which projection a slice belongs to. Every
factorization writes the same thing in the same way:

    T[i, o, b] = sum_r U_in[i, r] * Up[b, o, r]

so a slice costs what a LoRA of rank ``r = rank of the Input mode`` costs:
``y = (x @ U_in) @ Up[b].T`` (docs/architecture.md, "The adapter math"). ``Up`` for every slice of
a stack of same-shaped tensors comes from one einsum (:meth:`AdapterTensor.stacked_up`).
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence

import torch
from torch import nn

#: Letters for einsum subscripts; ``t`` is reserved for the stack index.
_LETTERS = [c for c in string.ascii_letters if c != "t"]


class AdapterTensor(nn.Module):
    """One factorized tensor: ``factors`` aligned with ``modes``, ``core`` for Tucker only."""

    factorization: str = ""

    def __init__(self, modes: Sequence[str], sizes: Sequence[int], ranks: Sequence[int]) -> None:
        super().__init__()
        if not (len(modes) == len(sizes) == len(ranks)):
            raise ValueError(
                f"modes, sizes and ranks must align; got {len(modes)}, {len(sizes)}, {len(ranks)}"
            )
        self.modes: tuple[str, ...] = tuple(modes)
        self.sizes: tuple[int, ...] = tuple(int(s) for s in sizes)
        self.ranks: tuple[int, ...] = tuple(int(r) for r in ranks)
        self.factors = nn.ParameterList()
        self.core: nn.Parameter | None = None

    @property
    def input_factor(self) -> torch.Tensor:
        """``U_in`` (``d_in x r_in``): the factor of mode 0."""
        return self.factors[0]

    @classmethod
    def stacked_up(
        cls, tensors: Sequence[AdapterTensor], output_modes: Sequence[int]
    ) -> torch.Tensor:
        """``Up`` of every slice of every tensor in ``tensors`` (all of one shape), in one einsum.

        Returns shape ``(len(tensors), *batch_sizes, prod(output sizes), r_in)``. The output
        feature flattens ``output_modes`` with the first one listed varying slowest; batch modes
        are the modes that are neither 0 nor output modes, in mode order.
        """
        raise NotImplementedError

    def full(self) -> torch.Tensor:
        """The dense tensor (shape ``sizes``); for tests and inspection, never the training path."""
        up = type(self).stacked_up([self], tuple(range(1, len(self.sizes))))[0]
        dense = torch.einsum("ir,or->io", self.input_factor, up)
        return dense.reshape(self.sizes)


def split_modes(order: int, output_modes: Sequence[int]) -> tuple[list[int], list[int]]:
    """(output modes as given, batch modes in mode order) of a tensor of ``order`` modes."""
    outputs = list(output_modes)
    if 0 in outputs or len(set(outputs)) != len(outputs) or not outputs:
        raise ValueError(f"output modes must be distinct, non-empty and exclude 0; got {outputs}")
    batch = [m for m in range(1, order) if m not in outputs]
    return outputs, batch


def letters(n: int) -> list[str]:
    return _LETTERS[:n]


def init_factor(size: int, rank: int, init: str, generator: torch.Generator | None) -> torch.Tensor:
    """A ``size x rank`` factor: orthonormal columns (or rows when rank > size), or Gaussian
    with columns of unit expected norm, so both inits give factors of the same scale."""
    factor = torch.empty(size, rank)
    if init == "orthogonal":
        nn.init.orthogonal_(factor, generator=generator)
    elif init == "normal":
        nn.init.normal_(factor, std=1.0 / math.sqrt(size), generator=generator)
    else:
        raise ValueError(f"init must be one of orthogonal, normal; got {init!r}")
    return factor
