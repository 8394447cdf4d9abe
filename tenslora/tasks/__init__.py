"""The task registry: every name in ``tenslora.catalog.TASKS`` maps to a loader of its splits."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from tenslora.catalog import TASKS, get_task
from tenslora.tasks.base import Split, TaskData, majority_baseline
from tenslora.tasks.hub import HUB_SOURCES, HubUnavailableError, load_hub_task
from tenslora.tasks.offline_image import load_mnist5k
from tenslora.tasks.offline_text import MissingDataError, load_rotten_tomatoes, load_sms_spam
from tenslora.tasks.synthetic import load_synthetic_text

__all__ = [
    "HubUnavailableError",
    "MissingDataError",
    "Split",
    "TaskData",
    "load_task",
    "majority_baseline",
    "task_rows",
]

_LOADERS: dict[str, Callable[[], tuple[Split, Split]]] = {
    "rotten_tomatoes": load_rotten_tomatoes,
    "sms_spam": load_sms_spam,
    "mnist5k": load_mnist5k,
    "synthetic_text": load_synthetic_text,
    **{name: partial(load_hub_task, name) for name in HUB_SOURCES},
}


def load_task(name: str) -> TaskData:
    """Both splits of the task called ``name`` (raises ValueError for an unknown name)."""
    info = get_task(name)
    train, validation = _LOADERS[name]()
    return TaskData(info.name, info.modality, info.num_labels, train, validation)


def task_rows() -> list[dict[str, object]]:
    """One row per registered task, as ``tenslora tasks`` prints it.

    ``majority_baseline`` is computed from the validation split for the offline tasks; for hub
    tasks it is None (knowing it would need the data set, which may not be here).
    """
    rows: list[dict[str, object]] = []
    for info in TASKS.values():
        baseline = load_task(info.name).majority_baseline() if info.offline else None
        rows.append({
            "name": info.name,
            "modality": info.modality,
            "num_labels": info.num_labels,
            "offline": info.offline,
            "synthetic": info.synthetic,
            "majority_baseline": baseline,
            "source": info.source,
        })
    return rows
