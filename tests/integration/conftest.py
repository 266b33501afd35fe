"""Data for end-to-end tests: real MNIST test digits and the production model's own answers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from training.data import load_mnist
from workers.model import DigitModel

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    data = load_mnist()
    return data.x_test, data.y_test


@pytest.fixture(scope="session")
def local_model() -> DigitModel:
    """The production model in this process: the reference every served answer must equal."""
    return DigitModel.load("models", "mnist_cnn", "production")


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
