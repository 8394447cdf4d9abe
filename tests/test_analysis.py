"""TensLoRA+ analysis: spectra against an independent SVD, gradient norms, the rank allocator."""

import math

import numpy as np
import pytest
import torch

from tenslora.analysis.signals import grad_norms, matrix_spectra
from tenslora.analysis.spectrum import spectrum_stats, unfold
from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.allocation import allocate_ranks
from tenslora.core.regimes import predict_parameters


def _independent_stats(matrix: np.ndarray) -> dict[str, float]:
    s = np.linalg.svd(matrix, compute_uv=False)
    e = s**2 / np.sum(s**2)
    entropy = -np.sum(e[e > 0] * np.log(e[e > 0]))
    return {"entropy": entropy, "entropy_norm": entropy / np.log(len(s)), "top1_energy": e[0],
            "effective_rank": np.exp(entropy), "singular_values": s}


def test_unfolding_puts_the_mode_on_rows_in_numpy_order():
    core = torch.arange(24.0).reshape(2, 3, 4)
    expected = np.moveaxis(core.numpy(), 1, 0).reshape(3, -1)
    assert np.array_equal(unfold(core, 1).numpy(), expected)
    assert unfold(core, 2).shape == (4, 6)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_core_spectra_match_numpy_svd_of_each_unfolding(mode):
    rng = np.random.default_rng(mode)
    core = rng.normal(size=(5, 4, 3, 6)) * np.array([3.0, 1.0, 0.5, 0.1, 0.05])[:, None, None,
                                                                                   None]
    unfolded = np.moveaxis(core, mode, 0).reshape(core.shape[mode], -1)
    stats = matrix_spectra([unfold(torch.tensor(core, dtype=torch.float32), mode)])
    expected = _independent_stats(unfolded)
    assert stats["singular_values"] == pytest.approx(expected["singular_values"].tolist(),
                                                     rel=1e-4)
    for name in ("entropy", "entropy_norm", "top1_energy", "effective_rank"):
        assert stats[name] == pytest.approx(expected[name], rel=1e-4)
    assert stats["rank"] == core.shape[mode]


def test_rank_one_and_uniform_spectra_hit_the_extremes():
    one = spectrum_stats(torch.tensor([2.0, 0.0, 0.0]))
    assert one["entropy"].item() == 0.0 and one["top1_energy"].item() == 1.0
    assert one["effective_rank"].item() == 1.0
    flat = spectrum_stats(torch.tensor([1.0, 1.0, 1.0, 1.0]))
    assert flat["entropy"].item() == pytest.approx(math.log(4))
    assert flat["entropy_norm"].item() == pytest.approx(1.0)
    assert flat["effective_rank"].item() == pytest.approx(4.0)


def test_a_zero_matrix_has_no_spectrum():
    stats = matrix_spectra([torch.zeros(3, 4)])
    assert math.isnan(stats["entropy"]) and math.isnan(stats["top1_energy"])


def test_several_tensors_average_their_statistics():
    a, b = torch.diag(torch.tensor([1.0, 0.0])), torch.eye(2)
    stats = matrix_spectra([a, b])
    assert stats["top1_energy"] == pytest.approx((1.0 + 0.5) / 2)
    assert stats["effective_rank"] == pytest.approx((1.0 + 2.0) / 2)


def test_grad_norms_are_the_root_of_the_sum_of_squares_over_tensors():
    a, b, c = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0])
    norms = grad_norms({"Input": [a, b], "Core": [c]})
    assert norms == {"Input": pytest.approx(5.0), "Core": 0.0}


# Hand-made spectra for qkv_depth on d=384, L=6, 12 heads, starting ranks 8, 8, 3, 6.
def _spectrum(rank, top1, entropy_norm):
    rest = (1 - top1) / max(rank - 1, 1)
    energy = [top1] + [rest] * (rank - 1)
    entropy = entropy_norm * math.log(rank) if rank > 1 else 0.0
    return {"singular_values": [math.sqrt(e) for e in energy], "entropy": entropy,
            "entropy_norm": entropy_norm, "top1_energy": top1,
            "effective_rank": math.exp(entropy)}


SHAPE = {"d_model": 384, "n_layers": 6, "n_heads": 12}


def _count(method, ranks):
    return predict_parameters(AdapterConfig(method, ranks=ranks), **SHAPE)


def test_allocator_shrinks_redundant_modes_and_grows_informative_ones_within_budget():
    spectra = {"Input": _spectrum(8, 0.97, 0.1), "Output": _spectrum(8, 0.2, 0.95),
               "QKV": _spectrum(3, 0.5, 0.8), "Layers": _spectrum(6, 0.3, 0.9)}
    budget = _count("qkv_depth", [8, 8, 3, 6])
    ranks = allocate_ranks(spectra, "qkv_depth", budget, **SHAPE)
    assert ranks["Input"] <= 2  # top-1 energy 0.97: redundant
    assert ranks["Output"] > 8  # the highest entropy grows
    assert ranks["QKV"] <= 3 and ranks["Layers"] <= 6  # never past their size
    assert _count("qkv_depth", [ranks[m] for m in ("Input", "Output", "QKV", "Layers")]) <= budget


def test_allocator_spends_the_budget_until_no_growth_step_fits():
    spectra = {"Input": _spectrum(4, 0.3, 0.9), "Output": _spectrum(4, 0.3, 0.9),
               "QKV": _spectrum(3, 0.4, 0.9), "Layers": _spectrum(6, 0.3, 0.9)}
    budget = 20_000
    ranks = allocate_ranks(spectra, "qkv_depth", budget, **SHAPE)
    order = ("Input", "Output", "QKV", "Layers")
    used = _count("qkv_depth", [ranks[m] for m in order])
    assert used <= budget
    for mode in ("Input", "Output"):  # one more rank on any growable mode would not fit
        grown = {**ranks, mode: ranks[mode] + 1}
        assert _count("qkv_depth", [grown[m] for m in order]) > budget
    assert abs(ranks["Input"] - ranks["Output"]) <= 1  # equal entropy: growth spreads evenly


def test_allocator_leaves_low_entropy_modes_alone_and_a_rank_one_mode_at_one():
    spectra = {"Input": _spectrum(8, 0.5, 0.3), "Output": _spectrum(8, 0.2, 0.95),
               "QKV": _spectrum(3, 0.999, 0.01), "Layers": _spectrum(6, 0.4, 0.2)}
    spectra["QKV"]["effective_rank"] = 1.01
    ranks = allocate_ranks(spectra, "qkv_depth", _count("qkv_depth", [8, 8, 3, 6]), **SHAPE)
    assert ranks["Input"] == 8 and ranks["Layers"] == 6
    assert ranks["QKV"] == 1


def test_allocator_shrinks_low_entropy_modes_first_when_over_budget():
    spectra = {"Input": _spectrum(8, 0.3, 0.9), "Output": _spectrum(8, 0.3, 0.4),
               "QKV": _spectrum(3, 0.4, 0.9), "Layers": _spectrum(6, 0.3, 0.9)}
    budget = _count("qkv_depth", [8, 6, 3, 6])
    ranks = allocate_ranks(spectra, "qkv_depth", budget, **SHAPE)
    assert ranks["Output"] < 8 and ranks["Input"] == 8


def test_allocator_gives_cp_and_lora_one_shared_rank():
    spectra = {m: _spectrum(4, 0.5, 0.5) for m in ("Input", "Output")}
    ranks = allocate_ranks(spectra, "lora", _count("lora", 6) + 10, **SHAPE)
    assert ranks == {"Input": 6, "Output": 6}


def test_allocator_rejects_a_budget_below_every_rank_one():
    spectra = {m: _spectrum(2, 0.5, 0.5) for m in ("Input", "Output", "QKV", "Layers")}
    with pytest.raises(ValueError, match="budget"):
        allocate_ranks(spectra, "qkv_depth", 100, **SHAPE)
