"""TensLoRA: tensor-factorized LoRA adapters.

The torch-free names (method table, configs, presets, job spec) import eagerly; the torch-backed
ones load on first use (PEP 562), so ``import tenslora.config`` never pulls torch in.
"""

from __future__ import annotations

import importlib
from typing import Any

from tenslora.config import AdapterConfig
from tenslora.methods import METHODS, TENSOR_METHODS
from tenslora.presets import isoparameters, isorank, predict_parameters

# name -> module that defines it; imported on first attribute access.
_LAZY: dict[str, str] = {
    "apply_adapter": "tenslora.model",
    "count_adapter_parameters": "tenslora.model",
    "merge_adapter": "tenslora.model",
    "unmerge_adapter": "tenslora.model",
    "adapter_state_dict": "tenslora.persist",
    "save_adapter": "tenslora.persist",
    "load_adapter": "tenslora.persist",
    "run_training": "tenslora.training",
    "run_pack": "tenslora.training",
}

__all__ = [
    "METHODS",
    "TENSOR_METHODS",
    "AdapterConfig",
    "isoparameters",
    "isorank",
    "predict_parameters",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tenslora' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
