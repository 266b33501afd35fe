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
from common.decoding import calibrate
from training import metrics
from training.data import MnistData, default_cache_dir, file_sha256, load_mnist
from training.synthetic import SyntheticConfig

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
    architecture: str = "wide"
    synthetic: SyntheticConfig | None = field(default_factory=SyntheticConfig)
    """Real-mail styles added to MNIST (`training.synthetic`); None: MNIST only."""
    label_smoothing: float = 0.0
    robustness: bool = True
    """Score the robustness sets (and production on them) for the card and the gate."""
    models_dir: Path = field(default_factory=registry.default_models_dir)
    data_path: Path | None = None
    reviewed: Path | None = None
    """Reviewed examples (`reviews export`): most join training, a held-out slice the gate."""
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


@dataclass(frozen=True)
class Splits:
    x_fit: np.ndarray
    y_fit: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_cal: np.ndarray
    """Calibration examples: MNIST validation digits plus synthetic captures of them."""
    y_cal: np.ndarray
    n_synthetic: int
    reviewed: Any = None
    """The `training.reviewed.ReviewedSet` whose training slice is in x_fit, if any."""


def _splits(data: MnistData, config: TrainConfig) -> Splits:
    from training.synthetic import cached_build

    x = data.x_train[: config.limit] if config.limit else data.x_train
    y = data.y_train[: config.limit] if config.limit else data.y_train
    # like Keras' validation_split: the last 10 % of the (unshuffled) training set
    n_val = int(len(x) * VALIDATION_SPLIT)
    x_fit, y_fit, x_val, y_val = x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]
    x_cal, y_cal, n_synthetic = x_val, y_val, 0
    if config.synthetic is not None:
        cache = default_cache_dir()
        xs, ys = cached_build(config.synthetic, x_fit, y_fit, cache)
        x_fit, y_fit = np.concatenate([x_fit, xs]), np.concatenate([y_fit, ys])
        n_synthetic = len(xs)
        share = max(1, len(xs) // 10)
        held = SyntheticConfig(
            mnist_scans=min(share, 4 * n_val), font_digits=0, seed=config.synthetic.seed + 1
        )
        xh, yh = cached_build(held, x_val, y_val, cache)
        x_cal, y_cal = np.concatenate([x_val, xh]), np.concatenate([y_val, yh])
    reviewed = None
    if config.reviewed is not None:
        from training.reviewed import load_reviewed

        reviewed = load_reviewed(config.reviewed)
        x_fit = np.concatenate([x_fit, reviewed.x_train])
        y_fit = np.concatenate([y_fit, reviewed.y_train])
    return Splits(x_fit, y_fit, x_val, y_val, x_cal, y_cal, n_synthetic, reviewed)


def _datasets(splits: Splits, config: TrainConfig) -> tuple[Any, Any]:
    import tensorflow as tf

    from training.augment import AugmentConfig, augment_batch

    x_fit, y_fit, x_val, y_val = splits.x_fit, splits.y_fit, splits.x_val, splits.y_val

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
    return fit, val


def to_model_input(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 28, 28, 1) float32 in [0, 1]: the model's input contract."""
    return (images.astype(np.float32) / 255.0)[..., None]


def _robustness(onnx_path: Path, config: TrainConfig) -> dict[str, Any]:
    """This model's and production's accuracy on the robustness test sets, side by side."""
    from training import robustness

    sets = robustness.sets_dir(default_cache_dir(), "test")
    models = {"candidate": onnx_path}
    try:
        current = registry.resolve(config.models_dir, config.name, registry.PRODUCTION)
        models["production"] = current / "model.onnx"
    except registry.RegistryError:
        current = None
    scores = robustness.evaluate_models(sets, models)
    return {
        "sets": scores["candidate"],
        "split": "test",
        "generator": sets.name,
        "production": (
            {"version": int(current.name), "sets": scores["production"]} if current else None
        ),
    }


def _reviewed_scores(onnx_path: Path, config: TrainConfig, splits: Splits) -> dict | None:
    """This model's and production's accuracy on the held-out reviewed slice (the gate's)."""
    from training import export

    reviewed = splits.reviewed
    if reviewed is None:
        return None
    record = reviewed.describe()
    if not len(reviewed.y_heldout):
        return record | {"accuracy": None, "production": None}
    x = to_model_input(reviewed.x_heldout)

    def accuracy(path: Path) -> float:
        return float((export.onnx_predict(path, x).argmax(1) == reviewed.y_heldout).mean())

    try:
        current = registry.resolve(config.models_dir, config.name, registry.PRODUCTION)
        production = {"version": int(current.name), "accuracy": accuracy(current / "model.onnx")}
    except registry.RegistryError:
        production = None
    return record | {"accuracy": accuracy(onnx_path), "production": production}


def train(config: TrainConfig) -> TrainResult:
    """Train, export, evaluate and publish a version; it appears complete or not at all."""
    set_seeds(config.seed)
    import keras

    from training import export, model_card
    from training.augment import AugmentConfig
    from training.calibration import expected_calibration_error, fit_temperature
    from training.model import build_model, multiply_adds

    data = load_mnist(config.data_path)
    print(f"data: {data.source}", flush=True)
    splits = _splits(data, config)
    n_fit, n_val = len(splits.x_fit), len(splits.x_val)
    print(f"training on {n_fit} images ({splits.n_synthetic} synthetic)", flush=True)
    fit_ds, val_ds = _datasets(splits, config)
    steps = config.epochs * int(np.ceil(n_fit / config.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=max(steps, 1), alpha=0.05)
    model = build_model(config.architecture, config.label_smoothing, schedule)
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
        x_cal, y_cal, cal_source = splits.x_cal, splits.y_cal, "MNIST validation + synthetic"
        if config.robustness:
            from training.robustness import dev_digits

            x_dev, y_dev = dev_digits(default_cache_dir())
            x_cal, y_cal = np.concatenate([x_cal, x_dev]), np.concatenate([y_cal, y_dev])
            cal_source += " + robustness dev split"
        p_cal = export.onnx_predict(onnx_path, to_model_input(x_cal))
        temperature = fit_temperature(p_cal, y_cal)
        calibration = {
            "method": "temperature",
            "temperature": temperature,
            "fitted_on": f"{len(y_cal)} held-out images ({cal_source})",
            "ece_before": expected_calibration_error(p_cal, y_cal),
            "ece_after": expected_calibration_error(calibrate(p_cal, temperature), y_cal),
        }
        robustness = _robustness(onnx_path, config) if config.robustness else None
        reviewed = _reviewed_scores(onnx_path, config, splits)
        metadata: dict[str, Any] = {
            "name": config.name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "architecture": {
                "name": config.architecture,
                "layers": [layer.__class__.__name__ for layer in model.layers],
                "params": int(model.count_params()),
                "multiply_adds": multiply_adds(model),
            },
            "parameters": {
                "epochs": config.epochs,
                "batch_size": config.batch_size,
                "seed": config.seed,
                "limit": config.limit,
                "validation_split": VALIDATION_SPLIT,
                "optimizer": "adam",
                "learning_rate": "cosine decay from 1e-3 to 5e-5",
                "loss": "categorical_crossentropy",
                "label_smoothing": config.label_smoothing,
                "augment": config.augment,
                "augmentation": AugmentConfig().to_dict() if config.augment else None,
                "synthetic": config.synthetic.to_dict() if config.synthetic else None,
            },
            "data": {
                "source": data.source,
                "sha256": data.sha256,
                "reference_mnist": data.is_reference_mnist,
                "train_images": n_fit,
                "synthetic_images": splits.n_synthetic,
                "reviewed_images": len(splits.reviewed.y_train) if splits.reviewed else 0,
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
            "calibration": calibration,
            "robustness": robustness,
            "reviewed": reviewed,
            "keras_metrics": {
                "test_accuracy": keras_eval["test_accuracy"],
                "test_loss": keras_eval["test_loss"],
            },
            "export_parity": {
                "max_abs_diff": float(np.abs(p_keras - p_onnx).max()),
                "argmax_agreement": float((p_keras.argmax(1) == p_onnx.argmax(1)).mean()),
            },
            "reference": metrics.reference_distributions(
                calibrate(p_onnx, temperature), data.y_train
            ),
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
