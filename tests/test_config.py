"""AdapterConfig validation and normalisation (torch-free)."""

import pytest

from tenslora.core.adapter_config import AdapterConfig


def test_ranks_accept_int_list_and_dict_in_mode_order():
    as_list = AdapterConfig("qkv_depth", ranks=[8, 8, 3, 12])
    as_dict = AdapterConfig("qkv_depth", ranks={"Input": 8, "Output": 8, "QKV": 3, "Layers": 12})
    assert as_list == as_dict
    assert as_list.mode_ranks() == {"Input": 8, "Output": 8, "QKV": 3, "Layers": 12}
    assert AdapterConfig("att", ranks=[4, 4, 4]).ranks == 4


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"method": "tensor"}, "method must be one of"),
        ({"method": "qkv", "factorization": "tt"}, "factorization must be one of"),
        ({"method": "qkv", "ranks": [4, 4]}, "must have 3 entries"),
        ({"method": "qkv", "ranks": 0}, "positive integer"),
        ({"method": "qkv", "ranks": [4, -1, 4]}, "positive integers"),
        ({"method": "qkv", "ranks": {"Input": 4, "Heads": 4, "QKV": 3}}, "must name exactly"),
        ({"method": "qkv", "factorization": "cp", "ranks": [4, 4, 3]}, "cp"),
        ({"method": "lora", "ranks": [4, 8]}, "lora"),
        ({"method": "qkv", "init": "xavier"}, "init must be one of"),
        ({"method": "qkv", "dropout": 1.5}, "dropout"),
        ({"method": "qkv", "projections": ("q", "x")}, "projections"),
        ({"method": "qkv", "projections": ()}, "projections"),
    ],
)
def test_bad_values_name_the_field_and_the_allowed_values(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        AdapterConfig(**kwargs)


def test_projections_are_canonically_ordered():
    assert AdapterConfig("qkv", projections=("v", "q")).projections == ("q", "v")


def test_round_trip_through_a_dict():
    config = AdapterConfig("att_qkv", ranks=[8, 4, 12, 3], scaling=2.0, seed=3)
    assert AdapterConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown AdapterConfig field"):
        AdapterConfig.from_dict({"method": "qkv", "rank": 4})
