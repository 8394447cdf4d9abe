"""TensLoRA: tensor-factorized LoRA adapters.

The torch-free names (method table, configs, presets, job spec) import eagerly; the torch-backed
ones load on first use (PEP 562), so ``import tenslora.core.adapter_config`` never pulls torch in.
"""

from __future__ import annotations

import importlib
from typing import Any

from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.methods import METHODS, TENSOR_METHODS
from tenslora.core.regimes import isoparameters, isorank, predict_parameters

# name -> module that defines it; imported on first attribute access.
_LAZY: dict[str, str] = {
    "apply_adapter": "tenslora.adapters.model",
    "count_adapter_parameters": "tenslora.adapters.model",
    "merge_adapter": "tenslora.adapters.model",
    "unmerge_adapter": "tenslora.adapters.model",
    "adapter_state_dict": "tenslora.adapters.persistence",
    "save_adapter": "tenslora.adapters.persistence",
    "load_adapter": "tenslora.adapters.persistence",
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
