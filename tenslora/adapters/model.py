"""Laying a TensLoRA adapter over a backbone, and reading it back (PEFT's ``LoraModel``
counterpart).

``apply_adapter`` freezes the backbone and swaps every targeted projection for an
:class:`~tenslora.adapters.layers.AdaptedLinear`; the adapter's tensors hang off the model as
``model.tenslora_adapter``, so ``model.parameters()``, ``.to()`` and ``state_dict`` see them.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from torch import nn

from tenslora.adapters.adapter import TensLoRAAdapter
from tenslora.adapters.factorization import AdapterTensor
from tenslora.adapters.inject import find_layout, replace_linear
from tenslora.adapters.layers import AdaptedLinear
from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.methods import CORE

ADAPTER_ATTRIBUTE = "tenslora_adapter"

__all__ = [
    "AdapterTensor",
    "adapter_config",
    "adapter_tensors",
    "apply_adapter",
    "count_adapter_parameters",
    "merge_adapter",
    "mode_parameters",
    "unmerge_adapter",
]


def apply_adapter(
    model: nn.Module, config: AdapterConfig | Mapping[str, Any], *, train_head: bool = False
) -> nn.Module:
    """Freeze ``model`` and wrap the targeted projections of every layer with the adapter.

    ``train_head=True`` leaves the task head (the top-level modules outside transformers'
    ``base_model``, e.g. ``classifier``) trainable too. Returns ``model``, changed in place.
    """
    if not isinstance(config, AdapterConfig):
        if not isinstance(config, Mapping):
            raise ValueError(
                f"config must be an AdapterConfig or a dict; got {type(config).__name__}"
            )
        config = AdapterConfig.from_dict(config)
    if isinstance(getattr(model, ADAPTER_ATTRIBUTE, None), TensLoRAAdapter):
        raise ValueError(
            "model already has a TensLoRA adapter; apply_adapter works on a bare backbone"
        )
    layout = find_layout(model, config.projections)
    if train_head and not layout.head:
        raise ValueError(
            f"train_head=True but {type(model).__name__} has no task head outside its base model"
        )
    for parameter in model.parameters():
        parameter.requires_grad_(False)

    adapter = TensLoRAAdapter(config, layout.shape)
    reference = layout.layers[0][config.projections[0]].linear.weight
    adapter.to(device=reference.device, dtype=reference.dtype)
    adapter.wrappers = [
        replace_linear(slots[info.projection], partial(AdaptedLinear, adapter=adapter, info=info))
        for slots, infos in zip(layout.layers, adapter.slices, strict=True)
        for info in infos
    ]
    adapter.train_head = train_head
    adapter.head_names = list(layout.head)
    layout.trunk.register_forward_pre_hook(adapter.start_forward)
    layout.trunk.register_forward_hook(adapter.end_forward)
    model.add_module(ADAPTER_ATTRIBUTE, adapter)
    if train_head:
        for head in layout.head.values():
            head.requires_grad_(True)
    return model


def get_adapter(model: nn.Module) -> TensLoRAAdapter:
    adapter = getattr(model, ADAPTER_ATTRIBUTE, None)
    if not isinstance(adapter, TensLoRAAdapter):
        raise ValueError(
            f"{type(model).__name__} has no TensLoRA adapter; call tenslora.apply_adapter first"
        )
    return adapter


def adapter_config(model: nn.Module) -> AdapterConfig:
    """The :class:`AdapterConfig` the model's adapter was built from."""
    return get_adapter(model).config


def adapter_tensors(model: nn.Module) -> list[AdapterTensor]:
    """Every factorized tensor of the adapter (for LoRA: one A/B pair per projection and layer).

    Each has ``.modes`` (names from :mod:`tenslora.core.methods`), ``.factorization`` (``tucker``,
    ``cp`` or ``lora``), ``.factors`` (an ``nn.ParameterList`` aligned with ``.modes``; factor i
    is ``dim_i x r_i``, LoRA's A is Input ``d_in x r`` and B is Output ``d_out x r``) and
    ``.core`` (the Tucker core, shape = ranks; None otherwise).
    """
    return list(get_adapter(model).tensors)  # type: ignore[arg-type]


def mode_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The adapter's parameters grouped by mode name (``Input``, ``Output``, ``HeadDim``,
    ``Heads``, ``QKV``, ``Layers``), plus ``Core`` for Tucker. Keys are exactly the method's modes
    (and ``Core`` when there is a core), in mode order; every list is non-empty."""
    groups: dict[str, list[nn.Parameter]] = {}
    for tensor in adapter_tensors(model):
        for mode, factor in zip(tensor.modes, tensor.factors, strict=True):
            groups.setdefault(mode, []).append(factor)
        if tensor.core is not None:
            groups.setdefault(CORE, []).append(tensor.core)
    return groups


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The task head's parameters: the modules the backbone's layout names its head
    (:attr:`~tenslora.adapters.inject.BackboneLayout.head`), recorded on the adapter when it was
    laid (a pack's job holds its own copies under the same names)."""
    return [p for name in get_adapter(model).head_names for p in getattr(model, name).parameters()]


def count_adapter_parameters(model: nn.Module) -> int:
    """Parameters the adapter adds (the head, even when trainable, is not counted).

    Equals :func:`tenslora.core.regimes.predict_parameters` for the same config and backbone sizes.
    """
    return get_adapter(model).parameter_count()


def merge_adapter(model: nn.Module) -> nn.Module:
    """Add the update into the frozen weights: inference then runs at the backbone's speed.

    Do not train while merged; :func:`unmerge_adapter` subtracts the same update again.
    """
    adapter = get_adapter(model)
    for wrapper, delta in zip(adapter.wrappers, _flat(adapter.delta_weights()), strict=True):
        wrapper.merge(delta)
    return model


def unmerge_adapter(model: nn.Module) -> nn.Module:
    """Subtract the merged update from the frozen weights, restoring the backbone."""
    adapter = get_adapter(model)
    for wrapper, delta in zip(adapter.wrappers, _flat(adapter.delta_weights()), strict=True):
        wrapper.unmerge(delta)
    return model


def is_merged(model: nn.Module) -> bool:
    return any(w.merged for w in get_adapter(model).wrappers)


def _flat(rows: list[list[Any]]) -> list[Any]:
    return [item for row in rows for item in row]
