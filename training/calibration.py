"""Temperature scaling (Guo et al. 2017): one number that makes "0.95" mean 95 %.

Fitted after training on held-out examples (MNIST validation digits and synthetic captures of
them, never the robustness sets) by minimising the negative log-likelihood of
softmax(log p / T). Stored in the version's metadata; the workers apply it
(`common.decoding.calibrate`).
"""

from __future__ import annotations

import numpy as np

from common.decoding import calibrate


def nll(probabilities: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = calibrate(probabilities, temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0))))


def fit_temperature(
    probabilities: np.ndarray, labels: np.ndarray, low: float = 0.25, high: float = 8.0
) -> float:
    """The T in [low, high] with the lowest NLL (golden-section search on log T; NLL is
    convex in 1/T)."""
    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(60):
        if nll(probabilities, labels, float(np.exp(c))) < nll(
            probabilities, labels, float(np.exp(d))
        ):
            b = d
        else:
            a = c
        c, d = b - ratio * (b - a), a + ratio * (b - a)
    return round(float(np.exp((a + b) / 2)), 4)


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 15
) -> float:
    """Mean |accuracy - confidence| over confidence bins, weighted by bin size."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return round(float(total), 6)
