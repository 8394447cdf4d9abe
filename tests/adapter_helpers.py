"""Small random-init backbones and the method x factorization grid for the adapter tests."""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Iterator

import torch
import transformers

from tenslora.core.methods import METHODS

D_MODEL, N_LAYERS, N_HEADS = 48, 3, 4
VOCAB = 64

#: Every tensor method with both factorizations, and LoRA once (it has no factorization).
GRID = [("lora", "tucker")] + [
    (m, f) for m in METHODS if METHODS[m].is_tensor for f in ("tucker", "cp")
]
GRID_IDS = [f"{m}-{f}" for m, f in GRID]


@functools.cache
def _bert() -> transformers.BertForSequenceClassification:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=D_MODEL,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=3,
    )
    return transformers.BertForSequenceClassification(config).eval()


def tiny_bert() -> transformers.BertForSequenceClassification:
    """A fresh copy of one fixed random BERT (3 layers, 4 heads, hidden 48)."""
    return copy.deepcopy(_bert())


def token_batch(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (2, 9), generator=generator)


@functools.cache
def _vit() -> transformers.ViTForImageClassification:
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=D_MODEL,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        intermediate_size=64,
        image_size=16,
        patch_size=8,
        num_labels=3,
    )
    return transformers.ViTForImageClassification(config).eval()


def tiny_vit() -> transformers.ViTForImageClassification:
    return copy.deepcopy(_vit())


def image_batch() -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def randomise(parameters, seed: int = 1, std: float = 0.5) -> None:
    generator = torch.Generator().manual_seed(seed)
    for p in parameters:
        p.copy_(torch.randn(p.shape, generator=generator) * std)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block (restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
