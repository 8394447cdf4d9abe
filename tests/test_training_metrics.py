"""Accuracy, MCC and macro F1 against known values and an independent implementation."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, matthews_corrcoef

from tenslora.training.metrics import classification_metrics, confusion_matrix


def test_binary_values_worked_by_hand():
    # tp=3 tn=4 fp=1 fn=2: MCC = (3*4 - 1*2) / sqrt(4 * 5 * 5 * 6) = 10 / sqrt(600)
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    predictions = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 1])
    metrics = classification_metrics(labels, predictions, 2)
    assert metrics["accuracy"] == pytest.approx(0.7)
    assert metrics["mcc"] == pytest.approx(10 / np.sqrt(600))
    f1_pos, f1_neg = 2 * 3 / (2 * 3 + 1 + 2), 2 * 4 / (2 * 4 + 2 + 1)
    assert metrics["f1"] == pytest.approx((f1_pos + f1_neg) / 2)


def test_perfect_inverted_and_constant_predictions():
    labels = np.array([0, 1, 0, 1])
    assert classification_metrics(labels, labels, 2)["mcc"] == pytest.approx(1.0)
    assert classification_metrics(labels, 1 - labels, 2)["mcc"] == pytest.approx(-1.0)
    constant = classification_metrics(labels, np.zeros(4, dtype=int), 2)
    assert constant["mcc"] == 0.0  # undefined correlation reported as 0, as sklearn does
    assert constant["accuracy"] == 0.5


@pytest.mark.parametrize("num_labels", [2, 3, 10])
def test_multiclass_agrees_with_sklearn(num_labels):
    rng = np.random.default_rng(num_labels)
    labels = rng.integers(0, num_labels, 500)
    predictions = np.where(rng.random(500) < 0.6, labels, rng.integers(0, num_labels, 500))
    metrics = classification_metrics(labels, predictions, num_labels)
    assert metrics["accuracy"] == pytest.approx(np.mean(labels == predictions))
    assert metrics["mcc"] == pytest.approx(matthews_corrcoef(labels, predictions))
    assert metrics["f1"] == pytest.approx(f1_score(labels, predictions, average="macro"))


def test_confusion_matrix_rows_are_true_classes():
    matrix = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
