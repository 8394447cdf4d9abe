"""The method table, parameter formula and rank presets (torch-free)."""

import subprocess
import sys

import pytest

from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.methods import METHODS, TENSOR_METHODS, Shape, method_parameters
from tenslora.core.parameter_table import method_rows
from tenslora.core.regimes import isoparameters, isorank, predict_parameters

PAPER_TUCKER_ISORANK_R4 = {
    "lora": 221_184,
    "att": 123_840,
    "qkv": 74_640,
    "depth": 18_768,
    "att_qkv": 43_728,
    "att_depth": 11_040,
    "qkv_depth": 6_460,
    "att_qkv_depth": 4_460,
}


@pytest.mark.parametrize("method", list(PAPER_TUCKER_ISORANK_R4))
def test_predicted_parameters_match_the_paper_at_roberta_base_size(method):
    config = AdapterConfig(method, ranks=4)
    assert predict_parameters(config, 768, 12, 12) == PAPER_TUCKER_ISORANK_R4[method]


def test_the_table_holds_lora_and_the_seven_constructions():
    assert list(METHODS) == ["lora", *TENSOR_METHODS]
    assert len(TENSOR_METHODS) == 7


@pytest.mark.parametrize(
    ("method", "modes"),
    [
        ("lora", ("Input", "Output")),
        ("att", ("Input", "HeadDim", "Heads")),
        ("qkv_depth", ("Input", "Output", "QKV", "Layers")),
        ("att_qkv_depth", ("Input", "HeadDim", "Heads", "QKV", "Layers")),
    ],
)
def test_mode_order_is_input_then_output_or_heads_then_qkv_then_layers(method, modes):
    assert METHODS[method].modes == modes


def test_cp_count_is_rank_times_the_sum_of_mode_sizes_per_tensor():
    shape = Shape(768, 12, 12)
    assert method_parameters("qkv_depth", "cp", (4,) * 4, shape) == 4 * (768 + 768 + 3 + 12)
    assert method_parameters("att", "cp", (2,) * 3, shape) == 36 * 2 * (768 + 64 + 12)


def test_output_projection_makes_the_qkv_mode_size_four():
    with_o = AdapterConfig("qkv_depth", ranks=4, projections=("q", "k", "v", "o"))
    assert predict_parameters(with_o, 768, 12, 12) == 768 * 4 * 2 + 4 * 4 + 12 * 4 + 4**4
    lora_o = AdapterConfig("lora", ranks=4, projections=("q", "k", "v", "o"))
    assert predict_parameters(lora_o, 768, 12, 12) == 48 * 2 * 768 * 4


def test_isorank_gives_the_lora_rank_on_every_mode():
    assert isorank("att_qkv_depth", 8) == (8, 8, 8, 8, 8)
    assert isorank("lora", 4) == (4, 4)


@pytest.mark.parametrize("method", TENSOR_METHODS)
def test_isoparameters_fixes_small_modes_and_lands_closest_to_lora(method):
    ranks = isoparameters(method, 4, 768, 12, 12)
    modes = METHODS[method].modes
    by_mode = dict(zip(modes, ranks, strict=True))
    assert by_mode.get("QKV", 3) == 3
    assert by_mode.get("Heads", 12) == 12
    assert by_mode.get("Layers", 12) == 12
    assert by_mode["Input"] >= by_mode.get("HeadDim", 0)
    if "Output" in by_mode:
        assert by_mode["Input"] == by_mode["Output"]
    target = 221_184

    def count(r):
        shrunk = tuple(
            min(r, 64) if m == "HeadDim" else r if m in ("Input", "Output") else by_mode[m]
            for m in modes
        )
        return predict_parameters(AdapterConfig(method, ranks=list(shrunk)), 768, 12, 12)

    chosen = predict_parameters(AdapterConfig(method, ranks=list(ranks)), 768, 12, 12)
    r = by_mode["Input"]
    assert abs(chosen - target) <= abs(count(r + 1) - target)
    if r > 1:
        assert abs(chosen - target) <= abs(count(r - 1) - target)


def test_methods_rows_report_percent_of_lora():
    rows = method_rows(768, 12, 12, 4)
    by_key = {(r["regime"], r["method"]): r for r in rows}
    assert by_key[("isorank", "qkv_depth")]["params"] == 6_460
    assert by_key[("isorank", "qkv_depth")]["percent_of_lora"] == pytest.approx(100 * 6460 / 221184)
    assert len(rows) == 1 + 2 * 7


def test_methods_command_prints_the_paper_counts():
    out = subprocess.run(
        [sys.executable, "-m", "cli", "methods", "--d-model", "768", "--layers", "12",
         "--heads", "12", "--lora-rank", "4"],
        capture_output=True, text=True, check=True,
    ).stdout
    for count in PAPER_TUCKER_ISORANK_R4.values():
        assert f"{count:,}" in out
