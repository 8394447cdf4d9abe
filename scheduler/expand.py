"""Sweep expansion: configs deep-merged onto a base, times the cartesian product of a grid.

Pure functions, no database: every job is validated here, so a bad sweep stores nothing.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from scheduler.errors import InvalidInput
from tenslora.core.job_spec import SyntheticSpec, TrainSpec, parse_spec, spec_hash
from tenslora.sweeps.documents import deep_merge, set_path

DOTTED_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class ExpandedJob:
    spec: TrainSpec | SyntheticSpec
    spec_hash: str
    origin: str  # where in the sweep it came from, for error messages


def check_finite(value: Any, where: str) -> None:
    """JSON from a client may carry NaN/Infinity; no spec field means that, and jsonb refuses it."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{where}: {value!r} is not a finite number")
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_finite(item, f"{where}[{index}]")


def count_jobs(
    configs: Sequence[Mapping[str, Any]] | None, grid: Mapping[str, Sequence[Any]]
) -> int:
    return (len(configs) if configs else 1) * math.prod(len(values) for values in grid.values())


def _check_shape(
    configs: Sequence[Mapping[str, Any]] | None,
    grid: Mapping[str, Sequence[Any]],
    max_jobs: int,
) -> None:
    if configs is not None and len(configs) == 0:
        raise InvalidInput("configs is empty: leave it out to run just the base, or list configs")
    for path, values in grid.items():
        if not DOTTED_PATH.match(path):
            raise InvalidInput(f"grid key {path!r} is not a dotted path such as 'optim.lr'")
        if len(values) == 0:
            raise InvalidInput(f"grid axis {path!r} is empty: give it at least one value")
    n_jobs = count_jobs(configs, grid)
    if n_jobs > max_jobs:
        axes = " x ".join(f"{path}: {len(values)}" for path, values in grid.items()) or "none"
        raise InvalidInput(
            f"the sweep expands to {n_jobs:,} jobs ({len(configs) if configs else 1} configs x "
            f"grid {axes}); at most {max_jobs:,} are accepted"
        )


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        loc = list(item["loc"])
        # The first part names the union member (the kind), not a field.
        if loc and loc[0] in ("train", "synthetic"):
            loc = loc[1:]
        location = ".".join(str(part) for part in loc) or "spec"
        parts.append(f"{location}: {item['msg']}")
    more = len(error.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def expand_sweep(
    base: Mapping[str, Any],
    configs: Sequence[Mapping[str, Any]] | None,
    grid: Mapping[str, Sequence[Any]] | None,
    max_jobs: int,
) -> list[ExpandedJob]:
    """Every distinct, validated job of a sweep, in submission order (first of equal ones kept)."""
    grid = dict(grid or {})
    _check_shape(configs, grid, max_jobs)
    check_finite(dict(base), "base")
    for index, config in enumerate(configs or []):
        check_finite(dict(config), f"configs[{index}]")
    for path, values in grid.items():
        check_finite(list(values), f"grid[{path!r}]")
    paths = list(grid)
    jobs: dict[str, ExpandedJob] = {}
    entries = [(f"configs[{i}]", c) for i, c in enumerate(configs)] if configs else [("base", {})]
    for where, config in entries:
        merged = deep_merge(base, config)
        for combination in itertools.product(*(grid[path] for path in paths)):
            document = copy.deepcopy(merged)
            origin = where
            if paths:
                chosen = ", ".join(f"{p}={v!r}" for p, v in zip(paths, combination, strict=True))
                origin = f"{where} with grid {chosen}"
            document.setdefault("kind", "train")
            try:
                for path, value in zip(paths, combination, strict=True):
                    set_path(document, path, value)
                spec = parse_spec(document)
            except ValidationError as exc:
                raise InvalidInput(f"{origin}: {_describe(exc)}") from None
            except ValueError as exc:
                raise InvalidInput(f"{origin}: {exc}") from None
            digest = spec_hash(spec)
            jobs.setdefault(digest, ExpandedJob(spec=spec, spec_hash=digest, origin=origin))
    return list(jobs.values())
