"""MNIST for evaluation, through the training helper's loader (no TensorFlow involved)."""

from __future__ import annotations

import numpy as np


def load(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N,28,28), labels (N,)) of MNIST `split` ("train" or "test")."""
    from training.data import load_mnist

    data = load_mnist()
    if split == "train":
        return data.x_train, np.asarray(data.y_train).astype(np.uint8)
    return data.x_test, np.asarray(data.y_test).astype(np.uint8)
