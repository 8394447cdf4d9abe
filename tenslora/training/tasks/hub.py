"""The paper's tasks through ``datasets``: used where a hub or a local ``datasets`` cache exists.

Which data set and columns a task reads is its ``hub`` entry in ``tenslora.core.catalog.TASKS``.

With ``HF_HUB_OFFLINE=1`` (or ``HF_DATASETS_OFFLINE=1``) ``load_dataset`` reads the local cache
only, and fails with a clear error when the data set was never downloaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tenslora.core.catalog import HubSource, get_task
from tenslora.training.tasks.base import Split


class HubUnavailableError(RuntimeError):
    """The data set is neither reachable on the hub nor in the local cache."""


def _to_split(rows: Any, source: HubSource) -> Split:
    labels = np.asarray(rows[source.label_column], dtype=np.int64)
    if len(source.text_columns) == 1:
        inputs: list[Any] = list(rows[source.text_columns[0]])
    elif source.text_columns:
        inputs = list(zip(*(rows[c] for c in source.text_columns), strict=True))
    else:
        # PIL images -> float arrays in [0, 1], H x W x C; the backbone resizes them.
        inputs = [np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
                  for img in rows[source.image_column]]
    return Split(inputs, labels)


def load_hub_task(name: str) -> tuple[Split, Split]:
    """Train and validation splits (GLUE's test labels are hidden; ``test`` stands in only for
    data sets that publish no validation split)."""
    import datasets

    source = get_task(name).hub
    if source is None:
        raise ValueError(f"task {name!r} is not a hub task")
    try:
        data = datasets.load_dataset(source.path, source.config)
    except Exception as exc:  # datasets raises many types for "no network, no cache"
        raise HubUnavailableError(
            f"task {name!r} loads {source.path}"
            f"{'/' + source.config if source.config else ''} through `datasets` and it is not "
            f"available here (no hub access and no local cache): {exc}. Offline tasks: "
            "rotten_tomatoes, sms_spam, mnist5k"
        ) from exc
    validation = "validation" if "validation" in data else "test"
    return _to_split(data["train"], source), _to_split(data[validation], source)
