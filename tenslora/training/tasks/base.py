"""What a loaded task is: two splits of (input, label) pairs. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Fixed seed of every offline train/validation split: the split is part of the task, not of the
#: run, so runs with different seeds are scored on the same validation examples.
SPLIT_SEED = 20_240_917


@dataclass(frozen=True)
class Split:
    """Inputs (``str``, a ``(str, str)`` pair, or an image array) and integer labels."""

    inputs: list[Any]
    labels: np.ndarray

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.labels):
            raise ValueError(f"{len(self.inputs)} inputs but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subsample(self, n: int | None, seed: int = SPLIT_SEED) -> Split:
        """At most ``n`` examples, picked by a seeded permutation (all when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        keep = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return Split([self.inputs[i] for i in keep], self.labels[keep])


@dataclass(frozen=True)
class TaskData:
    name: str
    modality: str
    num_labels: int
    train: Split
    validation: Split

    def majority_baseline(self) -> float:
        """Validation accuracy of always answering the validation split's most frequent class."""
        return majority_baseline(self.validation.labels)


def majority_baseline(labels: np.ndarray) -> float:
    """Accuracy of always answering the most frequent class of ``labels``."""
    return float(np.bincount(labels).max() / len(labels))


def split_train_validation(
    inputs: list[Any], labels: np.ndarray, validation_fraction: float
) -> tuple[Split, Split]:
    """Deterministic, stratified split: each class keeps its share in both halves."""
    rng = np.random.default_rng(SPLIT_SEED)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = round(len(members) * validation_fraction)
        val_idx += members[:n_val].tolist()
        train_idx += members[n_val:].tolist()
    train_idx.sort()
    val_idx.sort()

    def take(idx: list[int]) -> Split:
        return Split([inputs[i] for i in idx], labels[np.asarray(idx, dtype=np.int64)])

    return take(train_idx), take(val_idx)
