"""`AdapterConfig`: the whole user-facing contract of an adapter. Torch-free.

It is also the ``adapter`` section of the job spec (``tenslora.core.job_spec.TrainSpec``): pydantic
validates a stdlib dataclass by its annotations and runs ``__post_init__``, so the API, the
worker and the library read one model with one set of defaults.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, cast

from tenslora.core.methods import (
    DEFAULT_PROJECTIONS,
    FACTORIZATIONS,
    METHODS,
    PROJECTIONS,
    Method,
    get_method,
)

INITS: tuple[str, ...] = ("orthogonal", "normal")

Ranks = int | Sequence[int] | Mapping[str, int]


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _normalise_ranks(method: Method, factorization: str, ranks: Any) -> int | tuple[int, ...]:
    """Turn an int, a list in mode order or a dict mode -> rank into an int or a tuple."""
    modes = method.modes
    if isinstance(ranks, Mapping):
        unknown = sorted(set(ranks) - set(modes))
        missing = [m for m in modes if m not in ranks]
        if unknown or missing:
            raise ValueError(
                f"ranks for method {method.name!r} must name exactly the modes "
                f"{', '.join(modes)}; unknown: {unknown or 'none'}, missing: {missing or 'none'}"
            )
        ranks = [ranks[m] for m in modes]
    if isinstance(ranks, Sequence) and not isinstance(ranks, str):
        values = tuple(ranks)
        if not method.is_tensor and len(set(values)) == 1 and values:
            values = (values[0],) * len(modes)
        if len(values) != len(modes):
            raise ValueError(
                f"ranks for method {method.name!r} must have {len(modes)} entries, one per mode "
                f"({', '.join(modes)}); got {len(values)}"
            )
        if not all(_is_positive_int(r) for r in values):
            raise ValueError(f"ranks must be positive integers; got {list(values)}")
        if len(set(values)) == 1:
            return values[0]
        if not method.is_tensor:
            raise ValueError(f"ranks for method 'lora' must be one integer; got {list(values)}")
        if factorization == "cp":
            raise ValueError(
                f"ranks for factorization 'cp' must be one integer (CP has one rank R for "
                f"every mode); got {list(values)}"
            )
        return values
    if not _is_positive_int(ranks):
        raise ValueError(f"ranks must be a positive integer, a list or a dict; got {ranks!r}")
    return int(ranks)


@dataclass(frozen=True)
class AdapterConfig:
    """What adapter to lay over a backbone.

    - ``method``: ``lora`` or a tensor construction (see ``tenslora.core.methods.METHODS``).
    - ``factorization``: ``tucker`` (a core and one factor per mode) or ``cp`` (rank-R factors);
      ignored for ``lora``.
    - ``ranks``: one int for every mode, a list in the method's mode order, or a dict mode -> rank.
      Stored as an int when all modes share a rank, else as a tuple in mode order.
    - ``scaling``: the update is ``scaling * dW`` (the paper's alpha).
    - ``init``: ``orthogonal`` factors (HOSVD-like, the paper's choice) or ``normal``.
    - ``dropout``: dropout on the adapter's input.
    - ``projections``: which attention projections to adapt; adding ``o`` gives QKV size 4 (LoRTA).
    - ``seed``: seeds the adapter's initialisation when set.
    """

    # The job spec validates this dataclass with pydantic: unknown keys are refused there too.
    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    method: str = "lora"
    factorization: Literal[FACTORIZATIONS] = "tucker"  # type: ignore[valid-type]
    ranks: Ranks = 4
    scaling: float = 1.0
    init: Literal[INITS] = "orthogonal"  # type: ignore[valid-type]
    dropout: float = 0.0
    projections: tuple[str, ...] = field(default=DEFAULT_PROJECTIONS)
    seed: int | None = None

    def __post_init__(self) -> None:
        method = get_method(self.method)
        if self.factorization not in FACTORIZATIONS:
            raise ValueError(
                f"factorization must be one of {', '.join(FACTORIZATIONS)}; "
                f"got {self.factorization!r}"
            )
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}; got {self.init!r}")
        if not isinstance(self.scaling, int | float) or isinstance(self.scaling, bool):
            raise ValueError(f"scaling must be a number; got {self.scaling!r}")
        if not isinstance(self.dropout, int | float) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1); got {self.dropout!r}")
        if self.seed is not None and not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer or None; got {self.seed!r}")
        projections = (self.projections,) if isinstance(self.projections, str) else self.projections
        projections = tuple(projections)
        bad = [p for p in projections if p not in PROJECTIONS]
        if bad or not projections or len(set(projections)) != len(projections):
            raise ValueError(
                f"projections must be distinct names from {', '.join(PROJECTIONS)}; "
                f"got {list(projections)}"
            )
        # Canonical order, so ("v", "q") and ("q", "v") are the same adapter.
        object.__setattr__(self, "projections", tuple(p for p in PROJECTIONS if p in projections))
        object.__setattr__(self, "ranks", _normalise_ranks(method, self.factorization, self.ranks))

    @property
    def method_spec(self) -> Method:
        return METHODS[self.method]

    @property
    def modes(self) -> tuple[str, ...]:
        return self.method_spec.modes

    @property
    def n_projections(self) -> int:
        return len(self.projections)

    def rank_tuple(self) -> tuple[int, ...]:
        """Ranks in mode order (for ``lora``: the same r for Input and Output)."""
        if isinstance(self.ranks, int):
            return (self.ranks,) * len(self.modes)
        return cast(tuple[int, ...], self.ranks)  # __post_init__ left an int or a tuple

    def mode_ranks(self) -> dict[str, int]:
        return dict(zip(self.modes, self.rank_tuple(), strict=True))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["projections"] = list(self.projections)
        data["ranks"] = self.ranks if isinstance(self.ranks, int) else list(self.ranks)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdapterConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown AdapterConfig field(s) {unknown}; allowed: {', '.join(sorted(known))}"
            )
        values = dict(data)
        if "projections" in values and not isinstance(values["projections"], str):
            values["projections"] = tuple(values["projections"])
        return cls(**values)
