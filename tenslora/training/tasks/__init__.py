"""Loading the tasks of the registry (``tenslora.core.catalog.TASKS``): each entry names its hub
data set or its loader, so a new task is one entry there."""

from __future__ import annotations

from tenslora.core.catalog import TASKS, get_task, load_reference
from tenslora.training.tasks.base import Split, TaskData, majority_baseline
from tenslora.training.tasks.hub import HubUnavailableError, load_hub_task
from tenslora.training.tasks.offline_text import MissingDataError

__all__ = [
    "HubUnavailableError",
    "MissingDataError",
    "Split",
    "TaskData",
    "load_task",
    "majority_baseline",
    "task_rows",
]

def load_task(name: str) -> TaskData:
    """Both splits of the task called ``name`` (raises ValueError for an unknown name)."""
    info = get_task(name)
    if info.hub is not None:
        train, validation = load_hub_task(name)
    else:
        assert info.loader is not None  # TaskInfo holds one of the two
        train, validation = load_reference(info.loader)()
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
