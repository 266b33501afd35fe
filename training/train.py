"""One training run: data -> fit -> ONNX export -> evaluation -> new immutable registry version."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from common import registry
from training import metrics
from training.data import MnistData, file_sha256, load_mnist

VALIDATION_SPLIT = 0.1


@dataclass(frozen=True)
class TrainConfig:
    name: str = "mnist_cnn"
    epochs: int = 15
    batch_size: int = 128
    seed: int = 0
    limit: int | None = None
    """Train on the first `limit` training images only (smoke runs); the test set stays whole."""
    augment: bool = True
    models_dir: Path = field(default_factory=registry.default_models_dir)
    data_path: Path | None = None
    verbose: int | None = None
    """Keras fit verbosity; None: progress bar on a terminal, one line per epoch otherwise."""


@dataclass(frozen=True)
class TrainResult:
    version: int
    path: Path
    metadata: dict[str, Any]


def set_seeds(seed: int) -> None:
    """Python, NumPy and TF seeds plus deterministic TF ops (cheap for this small CPU model)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def code_version() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit or "unknown", "git_dirty": bool(status) if commit else None}


def library_versions() -> dict[str, str]:
    names = ["tensorflow", "keras", "numpy", "tf2onnx", "onnx", "onnxruntime"]
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def _datasets(data: MnistData, config: TrainConfig) -> tuple[Any, Any, int, int]:
    import tensorflow as tf

    from training.augment import AugmentConfig, augment_batch

    x = data.x_train[: config.limit] if config.limit else data.x_train
    y = data.y_train[: config.limit] if config.limit else data.y_train
    # like Keras' validation_split: the last 10 % of the (unshuffled) training set
    n_val = int(len(x) * VALIDATION_SPLIT)
    x_fit, y_fit, x_val, y_val = x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]

    def tensors(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return to_model_input(images), np.eye(10, dtype=np.float32)[labels]

    fit = tf.data.Dataset.from_tensor_slices(tensors(x_fit, y_fit))
    fit = fit.shuffle(len(x_fit), seed=config.seed, reshuffle_each_iteration=True)
    fit = fit.batch(config.batch_size)
    if config.augment:
        aug = AugmentConfig()
        fit = fit.map(lambda img, lab: (augment_batch(img, aug), lab))
    fit = fit.prefetch(2)
    val = tf.data.Dataset.from_tensor_slices(tensors(x_val, y_val)).batch(512)
    return fit, val, len(x_fit), n_val


def to_model_input(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 28, 28, 1) float32 in [0, 1]: the model's input contract."""
    return (images.astype(np.float32) / 255.0)[..., None]


def train(config: TrainConfig) -> TrainResult:
    """Train, export, evaluate and publish a version; it appears complete or not at all."""
    set_seeds(config.seed)
    import keras

    from training import export, model_card
    from training.augment import AugmentConfig
    from training.model import build_model

    data = load_mnist(config.data_path)
    print(f"data: {data.source}", flush=True)
    fit_ds, val_ds, n_fit, n_val = _datasets(data, config)
    model = build_model()
    verbose = config.verbose if config.verbose is not None else (1 if sys.stdout.isatty() else 2)
    started = time.perf_counter()
    history = model.fit(
        fit_ds, validation_data=val_ds, epochs=config.epochs, verbose=verbose, shuffle=False
    )
    train_seconds = time.perf_counter() - started

    staged = registry.staging_dir(config.models_dir, config.name)
    staged.chmod(0o755)  # mkdtemp makes it private; a published version is world-readable
    try:
        model.save(staged / "model.keras")
        onnx_path = export.export_onnx(model, staged / "model.onnx")
        x_test = to_model_input(data.x_test)
        p_keras = model.predict(x_test, batch_size=1024, verbose=0)
        p_onnx = export.onnx_predict(onnx_path, x_test)
        keras_eval = metrics.evaluate(p_keras, data.y_test)
        evaluation = metrics.evaluate(p_onnx, data.y_test)
        evaluation["evaluated_with"] = "onnxruntime on model.onnx"
        metadata: dict[str, Any] = {
            "name": config.name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "architecture": {
                "layers": [layer.__class__.__name__ for layer in model.layers],
                "params": int(model.count_params()),
            },
            "parameters": {
                "epochs": config.epochs,
                "batch_size": config.batch_size,
                "seed": config.seed,
                "limit": config.limit,
                "validation_split": VALIDATION_SPLIT,
                "optimizer": "adam",
                "learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
                "loss": "categorical_crossentropy",
                "augment": config.augment,
                "augmentation": AugmentConfig().to_dict() if config.augment else None,
            },
            "data": {
                "source": data.source,
                "sha256": data.sha256,
                "reference_mnist": data.is_reference_mnist,
                "train_images": n_fit,
                "validation_images": n_val,
                "test_images": len(data.y_test),
            },
            "code": code_version(),
            "libraries": library_versions(),
            "training": {
                "seconds": round(train_seconds, 1),
                "history": {
                    k: [round(float(v), 6) for v in vs] for k, vs in history.history.items()
                },
            },
            "metrics": evaluation,
            "keras_metrics": {
                "test_accuracy": keras_eval["test_accuracy"],
                "test_loss": keras_eval["test_loss"],
            },
            "export_parity": {
                "max_abs_diff": float(np.abs(p_keras - p_onnx).max()),
                "argmax_agreement": float((p_keras.argmax(1) == p_onnx.argmax(1)).mean()),
            },
            "reference": metrics.reference_distributions(p_onnx, data.y_train),
            "onnx": export.onnx_signature(onnx_path),
            "input_contract": {
                "dtype": "float32",
                "shape": [None, 28, 28, 1],
                "range": [0.0, 1.0],
                "polarity": "white ink (1.0) on black (0.0)",
                "normalisation": "ink cropped to its box, longer side 20 px, mass-centred in 28x28",
                "output": "float32 (N, 10) softmax probabilities, index = digit",
            },
        }

        def finalize(version: int) -> None:
            metadata["version"] = version
            metadata["files"] = {
                p.name: file_sha256(p) for p in sorted(staged.iterdir()) if p.is_file()
            }
            (staged / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
            (staged / "MODEL_CARD.md").write_text(model_card.render(metadata))

        version = registry.publish(config.models_dir, config.name, staged, finalize)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    path = Path(config.models_dir) / config.name / str(version)
    return TrainResult(version, path, metadata)
