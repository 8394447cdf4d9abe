"""Applying, counting, merging and training TensLoRA adapters on small random backbones."""

import pytest
import torch
from adapter_helpers import (
    D_MODEL,
    GRID,
    GRID_IDS,
    N_HEADS,
    N_LAYERS,
    image_batch,
    randomise,
    tiny_bert,
    tiny_vit,
    token_batch,
)

from tenslora import (
    AdapterConfig,
    apply_adapter,
    count_adapter_parameters,
    merge_adapter,
    predict_parameters,
    unmerge_adapter,
)
from tenslora.adapters.model import adapter_tensors, get_adapter
from tenslora.core.methods import METHODS


def _config(method, factorization, **kwargs):
    """Distinct ranks per mode for Tucker, so a mode/rank mix-up changes the count."""
    if factorization == "tucker" and METHODS[method].is_tensor and "ranks" not in kwargs:
        kwargs["ranks"] = [5, 3, 2, 3, 2][: METHODS[method].order]
    return AdapterConfig(method, factorization=factorization, **kwargs)


def _logits(model, batch=None):
    with torch.no_grad():
        return model(batch if batch is not None else token_batch()).logits


def _hidden(model):
    """The backbone's last hidden states (unit scale after LayerNorm, unlike a random head)."""
    with torch.no_grad():
        return model.base_model(token_batch()).last_hidden_state


@pytest.mark.parametrize("projections", [("q", "k", "v"), ("q", "k", "v", "o"), ("v",)])
@pytest.mark.parametrize(("method", "factorization"), GRID, ids=GRID_IDS)
def test_parameter_count_equals_prediction(method, factorization, projections):
    config = _config(method, factorization, projections=projections)
    model = apply_adapter(tiny_bert(), config)
    expected = predict_parameters(config, D_MODEL, N_LAYERS, N_HEADS)
    assert count_adapter_parameters(model) == expected
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == expected


@pytest.mark.parametrize(("method", "factorization"), GRID, ids=GRID_IDS)
def test_starts_at_the_backbone_and_moves_when_randomised(method, factorization):
    backbone = tiny_bert()
    reference = _logits(backbone)
    model = apply_adapter(tiny_bert(), _config(method, factorization, seed=0))
    assert torch.equal(_logits(model), reference)
    hidden = _hidden(model)
    randomise(get_adapter(model).parameters())
    assert (_hidden(model) - hidden).abs().max() > 1e-2


@pytest.mark.parametrize(("method", "factorization"), GRID, ids=GRID_IDS)
def test_merged_forward_equals_unmerged_and_unmerge_restores_the_backbone(method, factorization):
    model = apply_adapter(tiny_bert(), _config(method, factorization))
    randomise(get_adapter(model).parameters())
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
    unmerged = _logits(model)
    merge_adapter(model)
    changed = [n for n, p in model.named_parameters() if n in weights and not p.equal(weights[n])]
    assert len(changed) == 3 * N_LAYERS  # q, k, v weights of every layer took their update
    torch.testing.assert_close(_logits(model), unmerged, atol=1e-4, rtol=0)
    unmerge_adapter(model)
    for name, parameter in model.named_parameters():
        if name in weights:
            torch.testing.assert_close(parameter.detach(), weights[name], atol=1e-6, rtol=0)
    torch.testing.assert_close(_logits(model), unmerged, atol=1e-5, rtol=0)


def test_merge_and_unmerge_cover_the_output_projection_too():
    config = AdapterConfig("att_qkv_depth", ranks=3, projections=("q", "k", "v", "o"))
    model = apply_adapter(tiny_bert(), config)
    randomise(get_adapter(model).parameters())
    unmerged = _logits(model)
    merge_adapter(model)
    torch.testing.assert_close(_logits(model), unmerged, atol=1e-4, rtol=0)
    unmerge_adapter(model)
    torch.testing.assert_close(_logits(model), unmerged, atol=1e-5, rtol=0)


def _merged_updates(model):
    """{(layer, projection): dW} read off the weights, exactly what merging adds."""
    adapter = get_adapter(model)
    before = [w.base_layer.weight.detach().clone() for w in adapter.wrappers]
    merge_adapter(model)
    updates = {
        (w.info.layer, w.info.projection): w.base_layer.weight.detach() - old
        for w, old in zip(adapter.wrappers, before, strict=True)
    }
    unmerge_adapter(model)
    return updates


def _rank_of_rows(rows, tolerance=1e-4):
    singular = torch.linalg.svdvals(torch.stack([r.flatten() for r in rows]).double())
    return int((singular > tolerance * singular[0]).sum())


@pytest.mark.parametrize("method", ["att", "att_qkv", "att_depth", "att_qkv_depth"])
def test_rank_one_on_heads_makes_every_head_block_proportional(method):
    ranks = {mode: 3 for mode in METHODS[method].modes} | {"Heads": 1}
    model = apply_adapter(tiny_bert(), AdapterConfig(method, ranks=ranks))
    randomise(get_adapter(model).parameters())
    d_head = D_MODEL // N_HEADS
    for delta in _merged_updates(model).values():
        # Output feature j = h * d_head + a belongs to head h: rows of head h are one block.
        assert _rank_of_rows(list(delta.reshape(N_HEADS, d_head, D_MODEL))) == 1
        # The backbone's interleaving is not the one the Heads mode indexes.
        assert _rank_of_rows(list(delta.reshape(d_head, N_HEADS, D_MODEL).transpose(0, 1))) > 1


@pytest.mark.parametrize("method", ["qkv", "att_qkv", "qkv_depth", "att_qkv_depth"])
def test_rank_one_on_qkv_makes_the_projections_of_a_layer_proportional(method):
    ranks = {mode: 3 for mode in METHODS[method].modes} | {"QKV": 1}
    model = apply_adapter(tiny_bert(), AdapterConfig(method, ranks=ranks))
    randomise(get_adapter(model).parameters())
    updates = _merged_updates(model)
    for layer in range(N_LAYERS):
        assert _rank_of_rows([updates[layer, p] for p in "qkv"]) == 1
    assert _rank_of_rows([updates[0, "q"], updates[1, "q"]]) > 1


@pytest.mark.parametrize("method", ["depth", "att_depth", "qkv_depth", "att_qkv_depth"])
def test_rank_one_on_layers_makes_the_layers_proportional(method):
    ranks = {mode: 3 for mode in METHODS[method].modes} | {"Layers": 1}
    model = apply_adapter(tiny_bert(), AdapterConfig(method, ranks=ranks))
    randomise(get_adapter(model).parameters())
    updates = _merged_updates(model)
    for p in "qkv":
        assert _rank_of_rows([updates[layer, p] for layer in range(N_LAYERS)]) == 1
    assert _rank_of_rows([updates[0, "q"], updates[0, "k"]]) > 1


def test_only_the_adapter_trains_unless_the_head_is_asked_for():
    model = apply_adapter(tiny_bert(), AdapterConfig("att_qkv", ranks=2))
    adapter_ids = {id(p) for p in get_adapter(model).parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and {id(p) for p in trainable} == adapter_ids

    with_head = apply_adapter(tiny_bert(), AdapterConfig("att_qkv", ranks=2), train_head=True)
    names = {n for n, p in with_head.named_parameters() if p.requires_grad}
    assert {"classifier.weight", "classifier.bias"} <= names
    assert all(n.startswith(("classifier.", "tenslora_adapter.")) for n in names)
    assert count_adapter_parameters(with_head) == count_adapter_parameters(model)


@pytest.mark.parametrize(("method", "factorization"), GRID, ids=GRID_IDS)
def test_a_training_step_moves_the_adapter_and_nothing_else(method, factorization):
    model = apply_adapter(tiny_bert(), _config(method, factorization, seed=3)).train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    labels = torch.tensor([0, 2])
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = model(token_batch(), labels=labels).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(p.grad is not None for p in get_adapter(model).parameters())
    assert not torch.equal(_logits(model.eval()), _logits(tiny_bert()))
    for name, parameter in model.named_parameters():
        if name in frozen:
            assert torch.equal(parameter, frozen[name]), name


def test_two_forwards_before_one_backward_accumulate_gradients():
    model = apply_adapter(tiny_bert(), AdapterConfig("qkv_depth", seed=0))
    randomise(get_adapter(model).parameters())
    core = adapter_tensors(model)[0].core
    loss = model(token_batch(0)).logits.sum() + model(token_batch(1)).logits.sum()
    loss.backward()
    together = core.grad.clone()
    core.grad = None
    model(token_batch(0)).logits.sum().backward()
    model(token_batch(1)).logits.sum().backward()
    torch.testing.assert_close(core.grad, together)


def test_slices_come_from_one_einsum_per_forward(monkeypatch):
    model = apply_adapter(tiny_bert(), AdapterConfig("att", projections=("q", "k", "v", "o")))
    adapter = get_adapter(model)
    calls = []
    original = adapter.stacked_up
    monkeypatch.setattr(adapter, "stacked_up", lambda: calls.append(1) or original())
    model(token_batch()).logits.sum().backward()
    assert len(calls) == 1


def test_a_layer_called_on_its_own_computes_its_own_update():
    model = apply_adapter(tiny_bert(), AdapterConfig("att_qkv_depth", ranks=2, seed=0))
    randomise(get_adapter(model).parameters())
    wrapper = get_adapter(model).wrappers[4]  # layer 1, key
    x = torch.randn(2, 5, D_MODEL)
    expected = torch.nn.functional.linear(x, wrapper.weight, wrapper.bias)
    merge_adapter(model)
    merged_out = torch.nn.functional.linear(x, wrapper.weight, wrapper.bias)
    unmerge_adapter(model)
    assert not torch.allclose(merged_out, expected)
    torch.testing.assert_close(wrapper(x), merged_out, atol=1e-5, rtol=0)


def test_seed_makes_initialisation_reproducible():
    def factors(seed):
        model = apply_adapter(tiny_bert(), AdapterConfig("att_depth", init="normal", seed=seed))
        return [p.detach() for p in get_adapter(model).parameters()]

    assert all(torch.equal(a, b) for a, b in zip(factors(7), factors(7), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(factors(7), factors(8), strict=True))


def test_dropout_is_active_in_training_only():
    model = apply_adapter(tiny_bert(), AdapterConfig("qkv", dropout=0.5, seed=0))
    randomise(get_adapter(model).parameters())
    model.eval()
    assert torch.equal(_logits(model), _logits(model))
    get_adapter(model).train()
    assert not torch.equal(_logits(model), _logits(model))


@pytest.mark.parametrize(("method", "factorization"), [("att_qkv_depth", "tucker"), ("att", "cp")])
def test_vit_gets_the_same_adapter_over_q_proj_to_o_proj(method, factorization):
    config = AdapterConfig(method, factorization=factorization, projections=("q", "k", "v", "o"))
    reference = _logits(tiny_vit(), image_batch())
    model = apply_adapter(tiny_vit(), config)
    assert count_adapter_parameters(model) == predict_parameters(config, D_MODEL, N_LAYERS, N_HEADS)
    assert torch.equal(_logits(model, image_batch()), reference)
    randomise(get_adapter(model).parameters())
    unmerged = _logits(model, image_batch())
    assert not torch.allclose(unmerged, reference)
    merge_adapter(model)
    torch.testing.assert_close(_logits(model, image_batch()), unmerged, atol=1e-4, rtol=0)


def test_roberta_is_found_by_structure():
    import transformers

    config = transformers.RobertaConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=8,
        intermediate_size=32,
        max_position_embeddings=40,
    )
    model = apply_adapter(
        transformers.RobertaForSequenceClassification(config),
        AdapterConfig("att", ranks=2),
        train_head=True,
    )
    assert count_adapter_parameters(model) == predict_parameters(
        AdapterConfig("att", ranks=2), 32, 2, 8
    )
    assert model.classifier.out_proj.weight.requires_grad
