"""Validation metrics from predicted and true labels: accuracy, Matthews correlation, macro F1."""

from __future__ import annotations

import math

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """``C[i, j]``: examples of true class ``i`` predicted as ``j``."""
    counts = np.bincount(labels * num_labels + predictions, minlength=num_labels * num_labels)
    return counts.reshape(num_labels, num_labels).astype(np.float64)


def matthews_corrcoef(confusion: np.ndarray) -> float:
    """Multiclass MCC (Gorodkin's R_K); 0 when a marginal is constant (undefined correlation)."""
    total = confusion.sum()
    correct = np.trace(confusion)
    true_counts, predicted_counts = confusion.sum(1), confusion.sum(0)
    numerator = correct * total - true_counts @ predicted_counts
    denominator = math.sqrt(
        (total**2 - predicted_counts @ predicted_counts) * (total**2 - true_counts @ true_counts)
    )
    return float(numerator / denominator) if denominator > 0 else 0.0


def macro_f1(confusion: np.ndarray) -> float:
    """Mean F1 over the classes that occur among the labels or the predictions."""
    tp = np.diag(confusion)
    fp = confusion.sum(0) - tp
    fn = confusion.sum(1) - tp
    present = (tp + fp + fn) > 0
    if not present.any():
        return 0.0
    f1 = 2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])
    return float(f1.mean())


def classification_metrics(labels: np.ndarray, predictions: np.ndarray,
                           num_labels: int) -> dict[str, float]:
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    confusion = confusion_matrix(labels, predictions, num_labels)
    return {
        "accuracy": float(np.trace(confusion) / max(confusion.sum(), 1.0)),
        "mcc": matthews_corrcoef(confusion),
        "f1": macro_f1(confusion),
    }
