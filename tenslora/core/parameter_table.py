"""Rows of the paper's "# Params" column for every method and regime. Torch-free."""

from __future__ import annotations

from typing import Any

from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.methods import METHODS
from tenslora.core.regimes import (
    ISOPARAMETERS,
    ISORANK,
    LORA_REGIME,
    isoparameters,
    isorank,
    predict_parameters,
)


def method_rows(
    d_model: int,
    n_layers: int,
    n_heads: int,
    lora_rank: int,
    factorization: str = "tucker",
    projections: tuple[str, ...] = ("q", "k", "v"),
) -> list[dict[str, Any]]:
    """LoRA, then each tensor method under isorank and isoparameters, with counts and % of LoRA."""
    lora = AdapterConfig("lora", ranks=lora_rank, projections=projections)
    lora_params = predict_parameters(lora, d_model, n_layers, n_heads)
    rows = [_row(LORA_REGIME, "lora", lora, lora_params, d_model, n_layers, n_heads)]
    for regime in (ISORANK, ISOPARAMETERS):
        for name, method in METHODS.items():
            if not method.is_tensor:
                continue
            if regime == ISORANK:
                ranks = isorank(name, lora_rank)
            else:
                ranks = isoparameters(
                    name,
                    lora_rank,
                    d_model,
                    n_layers,
                    n_heads,
                    factorization=factorization,
                    n_projections=len(projections),
                )
            config = AdapterConfig(name, factorization, list(ranks), projections=projections)
            rows.append(_row(regime, name, config, lora_params, d_model, n_layers, n_heads))
    return rows


def _row(
    regime: str,
    name: str,
    config: AdapterConfig,
    lora_params: int,
    d_model: int,
    n_layers: int,
    n_heads: int,
) -> dict[str, Any]:
    params = predict_parameters(config, d_model, n_layers, n_heads)
    return {
        "regime": regime,
        "method": name,
        "factorization": config.factorization,
        "ranks": list(config.rank_tuple()),
        "params": params,
        "percent_of_lora": 100.0 * params / lora_params,
    }
