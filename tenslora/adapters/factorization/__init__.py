"""Tensor parameterisations of adapter updates, with no knowledge of any backbone.

Each class holds the parameters of one factorized tensor (or, for LoRA, one matrix pair) and
knows how to turn a *stack* of same-shaped instances into the per-slice "up" matrices that the
fast path multiplies with ``x @ U_in`` (see :mod:`tenslora.adapters.factorization.base`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tenslora.adapters.factorization.base import AdapterTensor
from tenslora.adapters.factorization.cp import CPTensor
from tenslora.adapters.factorization.lora import LoraPair
from tenslora.adapters.factorization.tucker import TuckerTensor

__all__ = ["FACTORIZATION_CLASSES", "AdapterTensor", "CPTensor", "LoraPair", "TuckerTensor",
           "build_tensor"]

#: factorization name -> its tensor class (the base module knows none of them: no cycle).
FACTORIZATION_CLASSES: dict[str, type[AdapterTensor]] = {
    cls.factorization: cls for cls in (TuckerTensor, CPTensor, LoraPair)
}


def build_tensor(
    factorization: str,
    modes: Sequence[str],
    sizes: Sequence[int],
    ranks: Sequence[int],
    init: str = "orthogonal",
    generator: torch.Generator | None = None,
) -> AdapterTensor:
    """A freshly initialised tensor of the named factorization (update zero at init)."""
    if factorization not in FACTORIZATION_CLASSES:
        raise ValueError(
            f"factorization must be one of {', '.join(FACTORIZATION_CLASSES)}; "
            f"got {factorization!r}"
        )
    cls: type[Any] = FACTORIZATION_CLASSES[factorization]
    return cls(modes, sizes, ranks, init=init, generator=generator)
