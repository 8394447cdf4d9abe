"""A made-up text task for smoke tests: the label is the polarity of one keyword in a sentence."""

from __future__ import annotations

import numpy as np

from tenslora.training.tasks.base import Split

_POSITIVE = ("good", "great", "lovely", "superb", "fine", "brilliant")
_NEGATIVE = ("bad", "awful", "dull", "poor", "terrible", "boring")
_SUBJECTS = ("the film", "this book", "the meal", "our trip", "the show", "that song")
_FILLERS = ("was", "seemed", "felt", "turned out", "looked", "sounded")
_N_TRAIN, _N_VALIDATION = 800, 200


def _sentences(n: int, rng: np.random.Generator) -> Split:
    labels = rng.integers(0, 2, size=n)
    texts = [
        f"{rng.choice(_SUBJECTS)} {rng.choice(_FILLERS)} "
        f"{rng.choice(_POSITIVE if label else _NEGATIVE)}"
        for label in labels
    ]
    return Split(texts, labels.astype(np.int64))


def load_synthetic_text() -> tuple[Split, Split]:
    rng = np.random.default_rng(0)
    return _sentences(_N_TRAIN, rng), _sentences(_N_VALIDATION, rng)
