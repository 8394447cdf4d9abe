"""The introspection contract the training runner codes against: adapter_tensors,
mode_parameters, adapter_config."""

import pytest
import torch
from adapter_helpers import GRID, GRID_IDS, N_HEADS, N_LAYERS, tiny_bert

from tenslora import AdapterConfig, apply_adapter
from tenslora.adapters.model import (
    adapter_config,
    adapter_tensors,
    count_adapter_parameters,
    mode_parameters,
)
from tenslora.core.methods import METHODS, Shape


@pytest.mark.parametrize(("method", "factorization"), GRID, ids=GRID_IDS)
def test_adapter_tensors_expose_modes_factors_and_core(method, factorization):
    config = AdapterConfig(method, factorization=factorization, ranks=2)
    model = apply_adapter(tiny_bert(), config)
    spec = METHODS[method]
    shape = Shape(48, N_LAYERS, N_HEADS)
    tensors = adapter_tensors(model)

    assert len(tensors) == spec.n_tensors(shape)
    expected = factorization if spec.is_tensor else "lora"
    for tensor in tensors:
        assert tensor.modes == spec.modes
        assert tensor.factorization == expected
        assert [tuple(f.shape) for f in tensor.factors] == [
            (size, 2) for size in spec.mode_sizes(shape)
        ]
        if expected == "tucker":
            assert tuple(tensor.core.shape) == (2,) * spec.order
        else:
            assert tensor.core is None
    assert adapter_config(model) == config


@pytest.mark.parametrize(("method", "factorization"), GRID, ids=GRID_IDS)
def test_mode_parameters_partition_the_adapter_by_mode(method, factorization):
    model = apply_adapter(tiny_bert(), AdapterConfig(method, factorization=factorization))
    groups = mode_parameters(model)
    expected = list(METHODS[method].modes)
    if factorization == "tucker" and METHODS[method].is_tensor:
        expected.append("Core")
    assert list(groups) == expected
    assert all(groups.values())
    every = [p for params in groups.values() for p in params]
    assert len({id(p) for p in every}) == len(every)
    assert sum(p.numel() for p in every) == count_adapter_parameters(model)
    assert all(p.requires_grad for p in every)


def test_lora_pairs_hold_a_as_input_and_b_as_output():
    model = apply_adapter(tiny_bert(), AdapterConfig("lora", ranks=3))
    pair = adapter_tensors(model)[0]
    a, b = pair.factors
    assert tuple(a.shape) == (48, 3) and tuple(b.shape) == (48, 3)
    assert b.abs().sum() == 0  # B starts at zero: the model starts at the backbone
    assert torch.allclose(a.detach().T @ a.detach(), torch.eye(3), atol=1e-5)  # orthonormal A
