"""Plain-dict operations on sweep documents: a config deep-merged onto the base, a grid value set
at its dotted path.

Torch-free and without validation: the service (``scheduler.expand``) builds validated jobs with
them, and the presets (``tenslora.sweeps.presets``) preview a sweep's jobs without the service.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Dicts merge key by key, recursively; anything else in ``override`` replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def set_path(document: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.c`` in ``document``, creating the objects on the way.

    Raises ValueError when the path goes through something that is not an object.
    """
    node = document
    *parents, leaf = path.split(".")
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            through = ".".join(parents[: depth + 1])
            raise ValueError(
                f"grid path {path!r} goes through {through!r}, which is "
                f"{type(child).__name__} {child!r}, not an object"
            )
        node = child
    node[leaf] = copy.deepcopy(value)
