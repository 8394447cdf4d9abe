"""Saving and loading an adapter alone: ``adapter_model.safetensors`` + ``adapter_config.json``.

The JSON holds the :class:`AdapterConfig`, the backbone sizes it was laid over and whether the
task head trained along (its weights are then saved too, under ``head.<name>.``), so loading onto a
fresh copy of the backbone reproduces the adapted model's outputs exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tenslora.adapters.adapter import TensLoRAAdapter
from tenslora.adapters.inject import find_layout
from tenslora.adapters.model import apply_adapter, get_adapter, is_merged
from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.methods import Shape
from tenslora.core.metric_contract import ADAPTER_CONFIG_FILE as CONFIG_FILE
from tenslora.core.metric_contract import ADAPTER_WEIGHTS_FILE as WEIGHTS_FILE

FORMAT_VERSION = 1
_HEAD_PREFIX = "head."


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors (and the head's, when it trained along), detached copies."""
    adapter = get_adapter(model)
    state = {key: value.detach().clone() for key, value in adapter.state_dict().items()}
    if adapter.train_head:
        for name in adapter.head_names:
            for key, value in getattr(model, name).state_dict().items():
                state[f"{_HEAD_PREFIX}{name}.{key}"] = value.detach().clone()
    return state


def save_adapter(model: nn.Module, path: str | Path) -> Path:
    """Write the adapter of ``model`` into the folder ``path`` (created); returns the folder."""
    adapter = get_adapter(model)
    if is_merged(model):
        raise ValueError("the adapter is merged into the backbone; call unmerge_adapter first")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous().cpu() for k, v in adapter_state_dict(model).items()}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    meta = {
        "format_version": FORMAT_VERSION,
        "config": adapter.config.to_dict(),
        "backbone": _shape_dict(adapter.shape),
        "train_head": adapter.train_head,
        "head": adapter.head_names,
    }
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def load_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the adapter saved in folder ``path`` onto ``model`` and return it.

    A bare backbone gets the adapter applied first; a model that already has one must have
    the same config. Raises ValueError when the backbone's sizes differ from the saved ones.
    """
    folder = Path(path)
    meta = _read_meta(folder)
    config = AdapterConfig.from_dict(meta["config"])
    existing = getattr(model, "tenslora_adapter", None)
    if existing is None:
        shape = find_layout(model, config.projections).shape
    else:
        adapter = get_adapter(model)
        if adapter.config != config:
            raise ValueError(
                f"model already has a different adapter ({adapter.config}); saved: {config}"
            )
        if is_merged(model):
            raise ValueError("the adapter is merged into the backbone; call unmerge_adapter first")
        shape = adapter.shape
    if _shape_dict(shape) != meta["backbone"]:
        raise ValueError(
            f"adapter in {folder} was saved for a backbone of {meta['backbone']}; "
            f"this one has {_shape_dict(shape)}"
        )
    if existing is None:
        apply_adapter(model, config, train_head=bool(meta.get("train_head", False)))
    adapter = get_adapter(model)
    reference = next(adapter.parameters())
    state = load_file(str(folder / WEIGHTS_FILE), device=str(reference.device))
    head_state = {k: v for k, v in state.items() if k.startswith(_HEAD_PREFIX)}
    own = {k: v.to(reference.dtype) for k, v in state.items() if k not in head_state}
    _load_into(adapter, own, f"{folder / WEIGHTS_FILE}")
    for name in meta.get("head", []) if meta.get("train_head") else []:
        prefix = f"{_HEAD_PREFIX}{name}."
        part = {k[len(prefix) :]: v for k, v in head_state.items() if k.startswith(prefix)}
        _load_into(getattr(model, name), part, f"{folder / WEIGHTS_FILE} (head {name!r})")
    return model


def read_adapter(path: str | Path) -> TensLoRAAdapter:
    """The adapter saved in folder ``path`` on its own, without a backbone (for inspection:
    its tensors, config and ``delta_weights``; it is wrapped around no projection)."""
    folder = Path(path)
    meta = _read_meta(folder)
    try:
        shape = Shape(**meta["backbone"])
    except TypeError as error:
        raise ValueError(f"{folder / CONFIG_FILE} has a malformed 'backbone': {error}") from None
    adapter = TensLoRAAdapter(AdapterConfig.from_dict(meta["config"]), shape)
    state = load_file(str(folder / WEIGHTS_FILE))
    own = {k: v.float() for k, v in state.items() if not k.startswith(_HEAD_PREFIX)}
    _load_into(adapter, own, f"{folder / WEIGHTS_FILE}")
    return adapter


def _read_meta(folder: Path) -> dict[str, Any]:
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"no saved adapter in {folder}: {name} is missing")
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{folder / CONFIG_FILE} is not valid JSON: {error}") from None
    if not isinstance(meta, dict) or "config" not in meta or "backbone" not in meta:
        raise ValueError(f"{folder / CONFIG_FILE} lacks the 'config' and 'backbone' entries")
    return meta


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{source} does not fit this adapter: {error}") from None


def _shape_dict(shape: Any) -> dict[str, int]:
    return {
        "d_model": shape.d_model,
        "n_layers": shape.n_layers,
        "n_heads": shape.n_heads,
        "n_projections": shape.n_projections,
    }
