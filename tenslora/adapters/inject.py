"""Backbone surgery: find the attention projections of a transformer by module structure.

Supported families are found by what they contain, not by their names:

- BERT / RoBERTa style: a self-attention module with ``nn.Linear`` children ``query``, ``key``,
  ``value``; its parent's other child holds the output projection as ``dense``.
- ViT style (transformers >= 5): an attention module with ``q_proj``, ``k_proj``, ``v_proj`` and
  ``o_proj`` children.

The number of heads comes from the model's ``config.num_attention_heads``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from torch import nn

from tenslora.core.methods import Shape

#: Child names of q, k, v in each layout we recognise.
_QKV_NAMES: tuple[tuple[str, str, str], ...] = (
    ("query", "key", "value"),
    ("q_proj", "k_proj", "v_proj"),
)


@dataclass
class Slot:
    """One targeted projection: where it hangs (``parent.name``) and the Linear itself."""

    parent: nn.Module
    name: str
    linear: nn.Linear


@dataclass
class BackboneLayout:
    """The targeted projections of every layer, the backbone's sizes and where to hook."""

    shape: Shape
    layers: list[dict[str, Slot]]
    #: The module every forward pass runs through before the first adapted layer.
    trunk: nn.Module
    #: The task head: top-level children outside the trunk that hold parameters, by name. The
    #: one definition of the head: the adapter trains, saves and packs these modules.
    head: dict[str, nn.Module] = field(default_factory=dict)


def _is_linear(module: object) -> bool:
    return isinstance(module, nn.Linear)


def _qkv_names(module: nn.Module) -> tuple[str, str, str] | None:
    for names in _QKV_NAMES:
        if all(_is_linear(getattr(module, n, None)) for n in names):
            return names
    return None


def _output_slot(
    attention_name: str, attention: nn.Module, modules: dict[str, nn.Module]
) -> Slot | None:
    """The output projection: ``o_proj`` inside, or ``dense`` in a sibling of the module."""
    o_proj = getattr(attention, "o_proj", None)
    if isinstance(o_proj, nn.Linear):
        return Slot(attention, "o_proj", o_proj)
    parent_name, _, own = attention_name.rpartition(".")
    parent = modules.get(parent_name)
    if parent is None:
        return None
    for name, sibling in parent.named_children():
        dense = getattr(sibling, "dense", None)
        if name != own and isinstance(dense, nn.Linear):
            return Slot(sibling, "dense", dense)
    return None


def _num_heads(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    heads = getattr(config, "num_attention_heads", None)
    if not isinstance(heads, int) or heads < 1:
        raise ValueError(
            f"{type(model).__name__} has no config.num_attention_heads; TensLoRA needs the "
            "backbone's head count (transformers BERT, RoBERTa and ViT models carry it)"
        )
    return heads


def _trunk(model: nn.Module, names: list[str], modules: dict[str, nn.Module]) -> nn.Module:
    """The deepest module containing every attention module whose ``forward`` actually runs
    (a ModuleList is only a container, so its parent is taken)."""
    parts = [n.split(".") for n in names]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    while True:
        module = modules[".".join(common)]
        if not isinstance(module, nn.ModuleList | nn.ModuleDict) or not common:
            return module
        common.pop()


def find_layout(model: nn.Module, projections: tuple[str, ...]) -> BackboneLayout:
    """Locate the ``projections`` (of q, k, v, o) of every layer of ``model``.

    Raises ValueError naming what was not found when ``model`` is not a supported backbone.
    """
    modules = dict(model.named_modules())
    attention = [(n, m, names) for n, m in modules.items() if (names := _qkv_names(m)) is not None]
    if not attention:
        raise ValueError(
            f"no attention modules found in {type(model).__name__}: TensLoRA looks for modules "
            "with nn.Linear children query/key/value (BERT, RoBERTa) or q_proj/k_proj/v_proj (ViT)"
        )
    n_heads = _num_heads(model)
    n_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if isinstance(n_layers, int) and n_layers != len(attention):
        raise ValueError(
            f"found {len(attention)} attention modules in {type(model).__name__} but "
            f"config.num_hidden_layers is {n_layers}; TensLoRA adapts one self-attention per "
            "layer (cross-attention is not supported)"
        )
    layers: list[dict[str, Slot]] = []
    for name, module, (q, k, v) in attention:
        slots = {
            p: Slot(module, n, cast(nn.Linear, getattr(module, n)))
            for p, n in zip("qkv", (q, k, v), strict=True)
        }
        if "o" in projections:
            out = _output_slot(name, module, modules)
            if out is None:
                raise ValueError(
                    f"projection 'o' requested but no output projection found for {name!r}: "
                    "expected an o_proj Linear or a sibling module with a Linear 'dense'"
                )
            slots["o"] = out
        layers.append({p: slots[p] for p in projections})
    d_model = _check_square(layers)
    shape = Shape(d_model, len(layers), n_heads, len(projections))
    trunk = _trunk(model, [n for n, _, _ in attention], modules)
    return BackboneLayout(shape, layers, trunk, _head(model, trunk))


def _head(model: nn.Module, trunk: nn.Module) -> dict[str, nn.Module]:
    """Top-level children outside the base model (transformers' ``base_model``) that hold
    parameters: the classifier of a ``...ForSequenceClassification`` model. A bare base model
    has none."""
    base = getattr(model, "base_model", None)
    if base is model or trunk is model:
        return {}
    if not isinstance(base, nn.Module):
        base = next(c for c in model.children() if any(m is trunk for m in c.modules()))
    return {
        name: child
        for name, child in model.named_children()
        if child is not base and any(True for _ in child.parameters())
    }


def _check_square(layers: list[dict[str, Slot]]) -> int:
    """Every targeted projection must map d_model -> d_model (the method table's assumption)."""
    d_model = next(iter(layers[0].values())).linear.in_features
    for index, slots in enumerate(layers):
        for p, slot in slots.items():
            lin = slot.linear
            if (lin.in_features, lin.out_features) != (d_model, d_model):
                raise ValueError(
                    f"projection {p!r} of layer {index} maps {lin.in_features} -> "
                    f"{lin.out_features} features; TensLoRA needs {d_model} -> {d_model}"
                )
    return d_model


def replace_linear(slot: Slot, wrap: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    """Swap ``slot``'s Linear for ``wrap(linear)`` in its parent; returns the wrapper."""
    wrapper = wrap(slot.linear)
    setattr(slot.parent, slot.name, wrapper)
    return wrapper
