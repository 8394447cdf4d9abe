"""HOSVD mode spectra of trained adapters, against tensorly and numpy as independent oracles."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorly as tl
import torch
from adapter_helpers import GRID, GRID_IDS, N_HEADS, N_LAYERS, randomise, tiny_bert

import tenslora
from tenslora.adapters.model import adapter_tensors, count_adapter_parameters, get_adapter
from tenslora.analysis.hosvd import adapter_mode_spectra
from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.methods import LAYERS, METHODS, TENSOR_METHODS
from tenslora.core.regimes import predict_parameters

ROOT = Path(__file__).resolve().parents[1]
D_MODEL = 48


def _adapted(method, factorization="tucker", ranks=4, scaling=1.0, seed=1):
    model = tiny_bert()
    config = AdapterConfig(method, factorization, ranks, scaling=scaling, seed=0)
    tenslora.apply_adapter(model, config)
    randomise(get_adapter(model).parameters(), seed=seed)
    return model


def _tensorly_dense(tensor):
    factors = [f.detach().double().numpy() for f in tensor.factors]
    if tensor.core is not None:
        return tl.tucker_to_tensor((tensor.core.detach().double().numpy(), factors))
    return tl.cp_to_tensor((np.ones(factors[0].shape[1]), factors))


def _updates(model):
    """The projections' updates as the model adds them: (L, P, d_in, d_out), float64."""
    rows = get_adapter(model).delta_weights()
    return np.stack([[d.double().numpy().T for d in row] for row in rows])


def _construction_tensor_by_loops(updates, method_name):
    """One construction's tensors from the updates, written index by index (no reshape tricks):
    output feature j = h * d_head + a belongs to head h."""
    method = METHODS[method_name]
    n_layers, n_projections, d_in, d_out = updates.shape
    d_head = d_out // N_HEADS
    tensors = {}
    for layer in range(n_layers):
        for p in range(n_projections):
            key = (p if not method.stack_projections else None,
                   layer if not method.stack_layers else None)
            batch = ([p] if method.stack_projections else []) + (
                [layer] if method.stack_layers else [])
            for j in range(d_out):
                out = [j % d_head, j // d_head] if method.split_heads else [j]
                sizes = ([d_head, N_HEADS] if method.split_heads else [d_out]) + (
                    [n_projections] if method.stack_projections else []) + (
                    [n_layers] if method.stack_layers else [])
                tensor = tensors.setdefault(key, np.zeros([d_in, *sizes]))
                tensor[(slice(None), *out, *batch)] = updates[layer, p, :, j]
    return tensors


@pytest.mark.parametrize(("method", "factorization"), GRID, ids=GRID_IDS)
def test_dense_tensors_equal_tensorly_reconstruction_of_the_same_factors(method, factorization):
    model = _adapted(method, factorization, scaling=0.5)
    for tensor in adapter_tensors(model):
        assert np.allclose(tensor.full().detach().double().numpy(), _tensorly_dense(tensor),
                           atol=1e-5)
    # The spectra are of scaling * dense (for LoRA: the first pair is the first att tensor,
    # whose Input unfolding is the update with its columns permuted).
    first = adapter_tensors(model)[0]
    result = adapter_mode_spectra(model)
    expected = np.linalg.svd(tl.unfold(0.5 * _tensorly_dense(first), 0), compute_uv=False)
    own = result.constructions[0].tensors[0].modes[0].singular_values
    assert own[0] == pytest.approx(expected[0], rel=1e-9)


@pytest.mark.parametrize("method", [m for m in TENSOR_METHODS])
def test_the_analysed_tensors_are_the_updates_the_model_adds_split_by_the_backbones_heads(method):
    """A TensLoRA adapter's analysed tensors, read back slice by slice with the backbone's head
    split, are exactly the updates its projections add (and a LoRA's updates stacked the same
    way are what its constructions analyse)."""
    from tenslora.analysis.hosvd import stack_updates

    model = _adapted(method, "tucker", scaling=2.0)
    adapter = get_adapter(model)
    by_loops = _construction_tensor_by_loops(_updates(model), method)
    stacked = stack_updates(_updates(model), METHODS[method], adapter.shape)
    dense = [2.0 * _tensorly_dense(t) for t in adapter_tensors(model)]
    assert len(stacked) == len(dense) == len(by_loops)
    for ours, loops, own in zip(stacked, by_loops.values(), dense, strict=True):
        assert np.allclose(ours, loops) and np.allclose(own, loops, atol=1e-5)


def test_a_lora_whose_layers_share_one_update_has_layers_rank_one():
    model = _adapted("lora", ranks=4)
    pairs = adapter_tensors(model)  # pair l * 3 + p
    with torch.no_grad():
        for layer in range(1, N_LAYERS):
            for p in range(3):
                for mine, first in zip(pairs[layer * 3 + p].factors, pairs[p].factors,
                                       strict=True):
                    mine.copy_(first)
    result = adapter_mode_spectra(model)
    with_layers = [c for c in result.constructions if LAYERS in c.modes]
    assert [c.method for c in with_layers] == ["depth", "att_depth", "qkv_depth",
                                               "att_qkv_depth"]
    for construction in with_layers:
        assert construction.tucker_ranks[LAYERS] == 1
        for tensor in construction.tensors:
            layers = tensor.modes[construction.modes.index(LAYERS)]
            assert layers.rank_kept == 1
            assert layers.top1_energy == pytest.approx(1.0, abs=1e-12)
            assert layers.effective_rank == pytest.approx(1.0, abs=1e-9)
            assert layers.singular_values[1] < 1e-6 * layers.singular_values[0]


def test_a_random_lora_has_high_entropy_on_every_mode():
    model = _adapted("lora", ranks=D_MODEL)  # full-rank random updates: no redundancy anywhere
    result = adapter_mode_spectra(model)
    assert len(result.constructions) == 7
    for construction in result.constructions:
        for row in construction.mode_summary():
            assert row["entropy_norm"] > 0.75, (construction.method, row)
            assert row["top1_energy"] < 0.5, (construction.method, row)
            assert row["rank_kept"] > 1


@pytest.mark.parametrize("method", ["att", "qkv_depth", "att_qkv_depth"])
def test_lora_construction_spectra_match_a_direct_numpy_svd(method):
    model = _adapted("lora", ranks=4, scaling=1.5).double()  # the oracle's updates in float64
    result = adapter_mode_spectra(model)
    construction = next(c for c in result.constructions if c.method == method)
    by_loops = list(_construction_tensor_by_loops(_updates(model), method).values())
    for tensor, analysed in zip(by_loops, construction.tensors, strict=True):
        assert analysed.shape == tensor.shape
        for mode, spectrum in enumerate(analysed.modes):
            unfolded = np.moveaxis(tensor, mode, 0).reshape(tensor.shape[mode], -1)
            s = np.linalg.svd(unfolded, compute_uv=False)
            e = s**2 / np.sum(s**2)
            nonzero = e[e > 1e-300]
            entropy = -np.sum(nonzero * np.log(nonzero))
            assert np.allclose(spectrum.singular_values, s, rtol=0, atol=1e-7 * s[0])
            assert spectrum.top1_energy == pytest.approx(e[0], rel=1e-9)
            assert spectrum.entropy == pytest.approx(entropy, abs=1e-6)
            assert spectrum.entropy_norm == pytest.approx(entropy / math.log(len(s)), abs=1e-6)
            assert spectrum.effective_rank == pytest.approx(math.exp(entropy), rel=1e-6)
            assert spectrum.rank_kept == int(np.argmax(np.cumsum(e) >= 0.9 - 1e-9)) + 1


def test_a_tucker_adapter_keeps_at_most_its_ranks_and_the_counts_use_the_parameter_formula():
    ranks = [5, 3, 2, 3, 2]
    model = _adapted("att_qkv_depth", "tucker", ranks=ranks)
    result = adapter_mode_spectra(model)
    (construction,) = result.constructions
    assert result.adapter_parameters == count_adapter_parameters(model)
    for rank, spectrum in zip(ranks, construction.tensors[0].modes, strict=True):
        assert spectrum.rank_kept <= rank
        assert max(spectrum.singular_values[rank:], default=0.0) < 1e-6
    kept = list(construction.tucker_ranks.values())
    config = AdapterConfig("att_qkv_depth", "tucker", kept)
    assert construction.tucker_parameters == predict_parameters(config, D_MODEL, N_LAYERS,
                                                                N_HEADS)


def test_lora_constructions_are_compared_with_the_loras_own_count():
    model = _adapted("lora", ranks=4)
    result = adapter_mode_spectra(model)
    lora = predict_parameters(AdapterConfig("lora", ranks=4), D_MODEL, N_LAYERS, N_HEADS)
    assert result.adapter_parameters == lora == count_adapter_parameters(model)
    for construction in result.constructions:
        config = AdapterConfig(construction.method, "tucker",
                               list(construction.tucker_ranks.values()))
        assert construction.tucker_parameters == predict_parameters(config, D_MODEL, N_LAYERS,
                                                                    N_HEADS)


def test_a_saved_folder_gives_the_same_analysis_as_the_model(tmp_path):
    model = _adapted("qkv", "cp", ranks=3)
    tenslora.save_adapter(model, tmp_path / "adapter")
    from_model = adapter_mode_spectra(model)
    from_folder = adapter_mode_spectra(tmp_path / "adapter")
    assert from_folder.to_dict() == from_model.to_dict()
    assert from_folder.method == "qkv" and from_folder.factorization == "cp"


def test_an_untrained_tucker_adapter_serialises_its_missing_spectra_as_null():
    model = tiny_bert()
    tenslora.apply_adapter(model, AdapterConfig("depth", ranks=2))  # core zero: no update yet
    data = json.loads(adapter_mode_spectra(model).to_json())
    spectrum = data["constructions"][0]["tensors"][0]["modes"][0]
    assert spectrum["entropy"] is None and spectrum["rank_kept"] == 0
    assert data["constructions"][0]["tucker_ranks"] == {"Input": 1, "Output": 1, "Layers": 1}


def test_energy_kept_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="energy_kept"):
        adapter_mode_spectra(_adapted("att"), energy_kept=1.5)


def _analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", "analyze", *args], capture_output=True, text=True,
        timeout=180, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )


def test_cli_analyze_prints_the_modes_table_and_json_of_a_saved_folder(tmp_path):
    folder = tenslora.save_adapter(_adapted("lora", ranks=4), tmp_path / "lora")
    table = _analyze(str(folder))
    assert table.returncode == 0, table.stderr
    for word in ("att_qkv_depth", "Layers", "HeadDim", "top-1", "LoRA"):
        assert word in table.stdout
    done = _analyze(str(folder), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [c["method"] for c in data["constructions"]] == list(TENSOR_METHODS)
    assert data["adapter_parameters"] == 2 * D_MODEL * 4 * 3 * N_LAYERS


def test_cli_analyze_of_a_folder_without_an_adapter_exits_2(tmp_path):
    done = _analyze(str(tmp_path))
    assert done.returncode == 2
    assert "adapter_config.json is missing" in done.stderr
