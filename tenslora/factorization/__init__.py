"""Tensor parameterisations of adapter updates, with no knowledge of any backbone.

Each class holds the parameters of one factorized tensor (or, for LoRA, one matrix pair) and
knows how to turn a *stack* of same-shaped instances into the per-slice "up" matrices that the
fast path multiplies with ``x @ U_in`` (see :mod:`tenslora.factorization.base`).
"""

from tenslora.factorization.base import AdapterTensor, build_tensor
from tenslora.factorization.cp import CPTensor
from tenslora.factorization.lora import LoraPair
from tenslora.factorization.tucker import TuckerTensor

__all__ = ["AdapterTensor", "CPTensor", "LoraPair", "TuckerTensor", "build_tensor"]
