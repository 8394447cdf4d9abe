"""The one table of adapter methods: LoRA and the 7 TensLoRA tensor constructions.

Everything else (parameter formula, mode names of the metrics, rank presets, sweep validation in
the service) reads this table. Torch-free on purpose: the service imports it.

Paper section 2.2: for projection p of layer l the update dW[p, l] (d_in x d_out) is stacked with
its siblings into tensors. A construction is described by three switches:

- ``split_heads``: the output dimension is unfolded as (HeadDim, Heads), following the backbone's
  own head split (output feature ``j = h * d_head + a`` belongs to head ``h``);
- ``stack_projections``: the q/k/v (and optionally o) updates of a layer share one tensor
  (QKV mode);
- ``stack_layers``: the updates of every layer share one tensor (Layers mode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INPUT = "Input"
OUTPUT = "Output"
HEAD_DIM = "HeadDim"
HEADS = "Heads"
QKV = "QKV"
LAYERS = "Layers"
CORE = "Core"

#: Every mode name in canonical order; ``Core`` names the Tucker core in metrics.
MODE_NAMES: tuple[str, ...] = (INPUT, OUTPUT, HEAD_DIM, HEADS, QKV, LAYERS)

PROJECTIONS: tuple[str, ...] = ("q", "k", "v", "o")
DEFAULT_PROJECTIONS: tuple[str, ...] = ("q", "k", "v")

FACTORIZATIONS: tuple[str, ...] = ("tucker", "cp")


@dataclass(frozen=True)
class Shape:
    """Backbone dimensions an adapter is laid over."""

    d_model: int
    n_layers: int
    n_heads: int
    n_projections: int = len(DEFAULT_PROJECTIONS)

    def __post_init__(self) -> None:
        for field in ("d_model", "n_layers", "n_heads", "n_projections"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be a positive integer, got {getattr(self, field)}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads


@dataclass(frozen=True)
class Method:
    """One way of stacking LoRA updates into tensors (or plain LoRA matrices)."""

    name: str
    split_heads: bool
    stack_projections: bool
    stack_layers: bool
    description: str
    is_tensor: bool = True

    @property
    def modes(self) -> tuple[str, ...]:
        """Mode names in order: Input, Output (or HeadDim, Heads), QKV, Layers."""
        modes = [INPUT]
        modes += [HEAD_DIM, HEADS] if self.split_heads else [OUTPUT]
        if self.stack_projections:
            modes.append(QKV)
        if self.stack_layers:
            modes.append(LAYERS)
        return tuple(modes)

    @property
    def order(self) -> int:
        return len(self.modes)

    def mode_sizes(self, shape: Shape) -> tuple[int, ...]:
        sizes = {
            INPUT: shape.d_model,
            OUTPUT: shape.d_model,
            HEAD_DIM: shape.d_head,
            HEADS: shape.n_heads,
            QKV: shape.n_projections,
            LAYERS: shape.n_layers,
        }
        return tuple(sizes[mode] for mode in self.modes)

    def n_tensors(self, shape: Shape) -> int:
        """How many independent tensors (or LoRA matrix pairs) the method holds."""
        count = 1
        if not self.stack_projections:
            count *= shape.n_projections
        if not self.stack_layers:
            count *= shape.n_layers
        return count


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "lora",
            False,
            False,
            False,
            "one rank-r matrix pair per projection and layer",
            is_tensor=False,
        ),
        Method("att", True, False, False, "per projection and layer: d_in x d_head x n_heads"),
        Method("qkv", False, True, False, "per layer: d_in x d_out x 3"),
        Method("depth", False, False, True, "per projection: d_in x d_out x L"),
        Method("att_qkv", True, True, False, "per layer: d_in x d_head x n_heads x 3"),
        Method("att_depth", True, False, True, "per projection: d_in x d_head x n_heads x L"),
        Method("qkv_depth", False, True, True, "one tensor: d_in x d_out x 3 x L"),
        Method("att_qkv_depth", True, True, True, "one tensor: d_in x d_head x n_heads x 3 x L"),
    )
}

TENSOR_METHODS: tuple[str, ...] = tuple(name for name, m in METHODS.items() if m.is_tensor)


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {name!r}") from None


def tensor_parameters(sizes: tuple[int, ...], ranks: tuple[int, ...], factorization: str) -> int:
    """Parameters of one factorized tensor.

    Tucker: one factor per mode plus the core, ``sum(dim_i * r_i) + prod(r_i)``.
    CP: one rank-R factor per mode, ``R * sum(dim_i)``.
    """
    if factorization == "tucker":
        return sum(d * r for d, r in zip(sizes, ranks, strict=True)) + math.prod(ranks)
    if factorization == "cp":
        return ranks[0] * sum(sizes)
    raise ValueError(
        f"factorization must be one of {', '.join(FACTORIZATIONS)}; got {factorization!r}"
    )


def method_parameters(method: str, factorization: str, ranks: tuple[int, ...], shape: Shape) -> int:
    """Adapter parameters of ``method`` over a backbone of ``shape``, ranks in mode order."""
    m = get_method(method)
    if not m.is_tensor:
        return m.n_tensors(shape) * 2 * shape.d_model * ranks[0]
    return m.n_tensors(shape) * tensor_parameters(m.mode_sizes(shape), ranks, factorization)
