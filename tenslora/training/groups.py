"""AdamW param groups: factors, the Tucker core (TensLoRA+: lr x core_lr_multiplier), optional
per-mode groups, and the classifier head."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from torch import nn

from tenslora.core.job_spec import OptimSpec
from tenslora.core.methods import CORE


def plan_param_groups(
    mode_params: Mapping[str, Sequence[nn.Parameter]],
    head_params: Sequence[nn.Parameter],
    optim: OptimSpec,
    other_trainable: Iterable[nn.Parameter] = (),
) -> list[dict[str, Any]]:
    """Groups named ``factors``, ``core``, one per mode listed in ``mode_lr_multipliers`` (named
    by the mode), and ``head``; each with its peak ``lr`` and an ``lr_multiplier`` to log.

    The core's lr is ``lr x core_lr_multiplier x mode_lr_multipliers.get("Core", 1)``. Trainable
    parameters the adapter library does not assign to a mode join ``factors``. Empty groups are
    left out.
    """
    multipliers: dict[str, float] = {}
    members: dict[str, list[nn.Parameter]] = {}

    def add(group: str, multiplier: float, params: Iterable[nn.Parameter]) -> None:
        multipliers[group] = multiplier
        members.setdefault(group, []).extend(params)

    add("factors", 1.0, [])
    for mode, params in mode_params.items():
        if mode == CORE:
            core_multiplier = optim.core_lr_multiplier * optim.mode_lr_multipliers.get(CORE, 1.0)
            add("core", core_multiplier, params)
        elif mode in optim.mode_lr_multipliers:
            add(mode, optim.mode_lr_multipliers[mode], params)
        else:
            add("factors", 1.0, params)
    add("head", 1.0, head_params)
    seen = {id(p) for group in members.values() for p in group}
    add("factors", 1.0, [p for p in other_trainable if id(p) not in seen])
    return [
        {
            "name": name,
            "params": params,
            "lr": optim.lr * multipliers[name],
            "lr_multiplier": multipliers[name],
            "weight_decay": optim.weight_decay,
        }
        for name, params in members.items()
        if params
    ]


def param_groups(model: nn.Module, head_params: Sequence[nn.Parameter],
                 optim: OptimSpec) -> list[dict[str, Any]]:
    """``plan_param_groups`` over a model the adapter was applied to."""
    from tenslora.adapters.model import mode_parameters

    trainable = [p for p in model.parameters() if p.requires_grad]
    return plan_param_groups(mode_parameters(model), head_params, optim, trainable)
