"""Evaluation numbers and drift-reference distributions from predicted probabilities.

NumPy only, so evaluation and monitoring code can compute the same figures without TensorFlow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NUM_CLASSES = 10
CONFIDENCE_BINS = 20


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))


def distribution(values: np.ndarray) -> list[float]:
    counts = np.bincount(values, minlength=NUM_CLASSES).astype(np.float64)
    return (counts / max(counts.sum(), 1.0)).round(6).tolist()


def confidence_histogram(probabilities: np.ndarray, bins: int = CONFIDENCE_BINS) -> dict[str, Any]:
    """Histogram of the top-class probability over [0, 1] (fractions, not counts)."""
    counts, edges = np.histogram(probabilities.max(axis=1), bins=bins, range=(0.0, 1.0))
    return {
        "bin_edges": edges.round(4).tolist(),
        "fractions": (counts / max(counts.sum(), 1)).round(6).tolist(),
    }


def evaluate(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Accuracy, loss, per-class precision/recall and the confusion matrix."""
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted)
    true_pos = np.diag(matrix).astype(np.float64)
    precision = true_pos / np.maximum(matrix.sum(axis=0), 1)
    recall = true_pos / np.maximum(matrix.sum(axis=1), 1)
    return {
        "test_accuracy": float(true_pos.sum() / max(len(labels), 1)),
        "test_loss": cross_entropy(probabilities, labels),
        "test_images": len(labels),
        "errors": int(len(labels) - true_pos.sum()),
        "per_class": {
            str(c): {
                "precision": round(float(precision[c]), 6),
                "recall": round(float(recall[c]), 6),
                "support": int(matrix[c].sum()),
            }
            for c in range(NUM_CLASSES)
        },
        "confusion_matrix": matrix.tolist(),
    }


def reference_distributions(probabilities: np.ndarray, train_labels: np.ndarray) -> dict[str, Any]:
    """What healthy traffic looks like, for drift monitoring to compare live traffic against."""
    return {
        "train_label_distribution": distribution(train_labels),
        "test_predicted_class_distribution": distribution(probabilities.argmax(axis=1)),
        "test_confidence_histogram": confidence_histogram(probabilities),
        "test_mean_confidence": round(float(probabilities.max(axis=1).mean()), 6),
    }
