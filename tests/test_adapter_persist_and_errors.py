"""Saving / loading adapters, and the clear errors bad configs and backbones get."""

import json

import pytest
import torch
from adapter_helpers import GRID, GRID_IDS, randomise, tiny_bert, token_batch
from torch import nn

from tenslora import (
    AdapterConfig,
    adapter_state_dict,
    apply_adapter,
    load_adapter,
    merge_adapter,
    save_adapter,
)
from tenslora.adapters.model import get_adapter


def _logits(model):
    with torch.no_grad():
        return model(token_batch()).logits


@pytest.mark.parametrize(("method", "factorization"), GRID, ids=GRID_IDS)
def test_save_and_load_onto_a_fresh_backbone_reproduces_outputs(method, factorization, tmp_path):
    config = AdapterConfig(method, factorization=factorization, ranks=2, scaling=2.0)
    model = apply_adapter(tiny_bert(), config)
    randomise(get_adapter(model).parameters())
    save_adapter(model, tmp_path / "adapter")

    loaded = load_adapter(tiny_bert(), tmp_path / "adapter")
    assert get_adapter(loaded).config == config
    assert torch.equal(_logits(loaded), _logits(model))
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["config"] == config.to_dict()


def test_a_trained_head_travels_with_the_adapter(tmp_path):
    model = apply_adapter(tiny_bert(), AdapterConfig("att_qkv", ranks=2), train_head=True)
    randomise([*get_adapter(model).parameters(), *model.classifier.parameters()])
    state = adapter_state_dict(model)
    assert {"head.classifier.weight", "head.classifier.bias"} <= set(state)
    save_adapter(model, tmp_path)
    loaded = load_adapter(tiny_bert(), tmp_path)
    assert torch.equal(_logits(loaded), _logits(model))
    assert loaded.classifier.weight.requires_grad


def test_loading_into_an_adapted_model_overwrites_its_tensors(tmp_path):
    config = AdapterConfig("depth", ranks=2)
    source = apply_adapter(tiny_bert(), config)
    randomise(get_adapter(source).parameters())
    save_adapter(source, tmp_path)
    target = apply_adapter(tiny_bert(), config)
    assert not torch.equal(_logits(target), _logits(source))
    load_adapter(target, tmp_path)
    assert torch.equal(_logits(target), _logits(source))


def test_adapter_state_dict_holds_only_the_adapter():
    model = apply_adapter(tiny_bert(), AdapterConfig("qkv", factorization="cp", ranks=2))
    state = adapter_state_dict(model)
    assert sum(t.numel() for t in state.values()) == sum(
        p.numel() for p in get_adapter(model).parameters()
    )
    assert not any(key.startswith("head.") for key in state)


def test_load_refuses_a_backbone_of_other_sizes(tmp_path):
    import transformers

    save_adapter(apply_adapter(tiny_bert(), AdapterConfig("att")), tmp_path)
    other = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=64,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=32,
        )
    )
    with pytest.raises(ValueError, match="saved for a backbone of"):
        load_adapter(other, tmp_path)


def test_load_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"adapter_config\.json is missing"):
        load_adapter(tiny_bert(), tmp_path)


def test_load_refuses_a_different_adapter_already_in_place(tmp_path):
    save_adapter(apply_adapter(tiny_bert(), AdapterConfig("att")), tmp_path)
    with pytest.raises(ValueError, match="different adapter"):
        load_adapter(apply_adapter(tiny_bert(), AdapterConfig("qkv")), tmp_path)


def test_saving_a_merged_adapter_is_refused(tmp_path):
    model = merge_adapter(apply_adapter(tiny_bert(), AdapterConfig("att")))
    with pytest.raises(ValueError, match="unmerge_adapter"):
        save_adapter(model, tmp_path)


class _Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)


def test_a_model_without_attention_is_refused_with_what_was_looked_for():
    with pytest.raises(ValueError, match=r"no attention modules found in _Mlp.*query/key/value"):
        apply_adapter(_Mlp(), AdapterConfig("att"))


class _HeadlessAttention(nn.Module):
    """Has query/key/value projections but no config saying how many heads they hold."""

    def __init__(self):
        super().__init__()
        self.attention = nn.Module()
        for name in ("query", "key", "value"):
            setattr(self.attention, name, nn.Linear(8, 8))


def test_a_backbone_without_a_head_count_is_refused():
    with pytest.raises(ValueError, match=r"_HeadlessAttention has no config\.num_attention_heads"):
        apply_adapter(_HeadlessAttention(), AdapterConfig("att"))


def test_an_adapter_cannot_be_applied_twice():
    model = apply_adapter(tiny_bert(), AdapterConfig("att"))
    with pytest.raises(ValueError, match="already has a TensLoRA adapter"):
        apply_adapter(model, AdapterConfig("att"))


def test_train_head_needs_a_head():
    with pytest.raises(ValueError, match="no task head"):
        apply_adapter(tiny_bert().bert, AdapterConfig("att"), train_head=True)


def test_bad_config_dicts_name_the_field():
    with pytest.raises(ValueError, match="factorization must be one of"):
        apply_adapter(tiny_bert(), {"method": "att", "factorization": "tt"})
    with pytest.raises(ValueError, match="unknown AdapterConfig field"):
        apply_adapter(tiny_bert(), {"method": "att", "rank": 4})


def test_functions_on_a_bare_model_ask_for_apply_adapter_first():
    with pytest.raises(ValueError, match="apply_adapter first"):
        merge_adapter(tiny_bert())
