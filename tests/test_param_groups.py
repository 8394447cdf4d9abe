"""TensLoRA+ param groups: the core really trains at lr x core_lr_multiplier."""

import pytest
import torch
from torch import nn

from tenslora.core.job_spec import OptimSpec
from tenslora.training.groups import plan_param_groups


def _params(*shapes):
    return [nn.Parameter(torch.randn(*shape)) for shape in shapes]


def _modes():
    return {"Input": _params((6, 2)), "Output": _params((6, 2)), "QKV": _params((3, 2)),
            "Core": _params((2, 2, 2))}


def test_groups_carry_their_multiplied_learning_rates():
    modes, head = _modes(), _params((2, 6))
    optim = OptimSpec(lr=1e-3, core_lr_multiplier=8.0, mode_lr_multipliers={"QKV": 2.0})
    groups = {g["name"]: g for g in plan_param_groups(modes, head, optim)}
    assert set(groups) == {"factors", "core", "QKV", "head"}
    assert groups["core"]["lr"] == pytest.approx(8e-3)
    assert groups["QKV"]["lr"] == pytest.approx(2e-3)
    assert groups["factors"]["lr"] == groups["head"]["lr"] == pytest.approx(1e-3)
    assert groups["factors"]["params"] == modes["Input"] + modes["Output"]
    assert groups["core"]["params"] == modes["Core"]


def test_a_core_mode_multiplier_compounds_with_the_core_multiplier():
    optim = OptimSpec(lr=1e-3, core_lr_multiplier=4.0, mode_lr_multipliers={"Core": 2.0})
    groups = {g["name"]: g for g in plan_param_groups(_modes(), [], optim)}
    assert groups["core"]["lr"] == pytest.approx(8e-3)
    assert "head" not in groups  # empty groups are left out


def test_every_trainable_parameter_lands_in_exactly_one_group():
    modes, head = _modes(), _params((2, 6))
    stray = _params((4,))
    everything = [p for ps in modes.values() for p in ps] + head + stray
    groups = plan_param_groups(modes, head, OptimSpec(), everything)
    placed = [id(p) for g in groups for p in g["params"]]
    assert sorted(placed) == sorted(id(p) for p in everything)


def test_first_adamw_step_moves_the_core_multiplier_times_further():
    # AdamW's first step moves every coordinate by lr (gradient / |gradient|), so the step sizes
    # of two groups are their learning rates: the core's must be lr x multiplier.
    modes = _modes()
    optim = OptimSpec(lr=1e-3, core_lr_multiplier=16.0)
    optimizer = torch.optim.AdamW(plan_param_groups(modes, [], optim), weight_decay=0.0)
    before = {mode: [p.detach().clone() for p in ps] for mode, ps in modes.items()}
    loss = sum((p * torch.randn_like(p)).sum() for ps in modes.values() for p in ps)
    loss.backward()
    optimizer.step()
    core_step = (modes["Core"][0] - before["Core"][0]).abs()
    input_step = (modes["Input"][0] - before["Input"][0]).abs()
    assert core_step.mean().item() == pytest.approx(16e-3, rel=1e-3)
    assert input_step.mean().item() == pytest.approx(1e-3, rel=1e-3)
