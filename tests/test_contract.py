"""The metric contract: names, last values, and the allocator input averaged over seeds."""

import math

from tenslora.core import metric_contract as contract
from tenslora.core.methods import METHODS


def test_every_mode_of_every_method_has_a_metric_name_and_a_plot_colour():
    from api.dashboard.plots import MODE_COLORS

    modes = {mode for method in METHODS.values() for mode in method.modes} | {"Core"}
    assert modes == set(contract.METRIC_MODES) == set(MODE_COLORS)
    assert contract.metric_name(contract.GRAD_NORM, "Core") == "grad_norm/Core"
    assert contract.SPECTRUM_PREFIXES == ("svd_entropy_norm/", "top1_energy/", "eff_rank/")


def test_last_values_take_the_largest_step_and_skip_missing_values():
    points = [
        {"step": 20, "name": "train/loss", "value": 0.5},
        {"step": 10, "name": "train/loss", "value": 0.9},
        {"step": 30, "name": "train/loss", "value": None},
        {"step": 5, "name": "top1_energy/Input", "value": 0.7},
    ]
    assert contract.last_values(points) == {"train/loss": 0.5, "top1_energy/Input": 0.7}
    assert contract.last_values(points, contract.SPECTRUM_PREFIXES) == {"top1_energy/Input": 0.7}


def _run(entropy_norm: float, top1: float, modes=("Input", "QKV")) -> dict[str, float]:
    values = {}
    for mode in modes:
        values |= {f"svd_entropy_norm/{mode}": entropy_norm, f"top1_energy/{mode}": top1,
                   f"eff_rank/{mode}": 2.0}
    return values


def test_allocator_input_averages_each_statistic_over_the_seeds_of_one_adapter():
    spectra = contract.allocator_input([_run(0.2, 0.9), _run(0.6, 0.5)], {"Input": 4, "QKV": 3})
    assert set(spectra) == {"Input", "QKV"}
    assert math.isclose(spectra["Input"]["entropy_norm"], 0.4)
    assert math.isclose(spectra["QKV"]["top1_energy"], 0.7)
    assert spectra["QKV"]["rank"] == 3 and spectra["Input"]["effective_rank"] == 2.0


def test_a_seed_without_a_mode_does_not_drop_the_others_and_a_mode_nobody_streamed_is_left_out():
    spectra = contract.allocator_input([_run(0.2, 0.9, modes=("Input",)), _run(0.6, 0.5)],
                                       {"Input": 4, "QKV": 3, "Layers": 2})
    assert set(spectra) == {"Input", "QKV"}
    assert math.isclose(spectra["QKV"]["entropy_norm"], 0.6)
