"""Keras -> ONNX for the workers, via SavedModel and the tf2onnx CLI.

`tf2onnx.convert.from_keras` fails on Keras 3 models, so: `model.export()` to a SavedModel,
then `python -m tf2onnx.convert --saved-model` in a subprocess (keeps tf2onnx's graph
rewriting out of the training process). The SavedModel is deleted afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # keep TensorFlow out of processes that only run ONNX
    import keras

ONNX_INPUT = "image"
ONNX_OUTPUT = "probabilities"
ONNX_OPSET = 17


class ExportError(RuntimeError):
    pass


def export_onnx(model: keras.Model, target: Path) -> Path:
    """Write `target` (an .onnx file) with input `image` (N,28,28,1) and output `probabilities`."""
    with tempfile.TemporaryDirectory(prefix="savedmodel-", dir=target.parent) as tmp:
        saved = Path(tmp) / "savedmodel"
        model.export(str(saved), format="tf_saved_model", verbose=False)
        command = [
            sys.executable, "-m", "tf2onnx.convert",
            "--saved-model", str(saved),
            "--output", str(target),
            "--opset", str(ONNX_OPSET),
            "--rename-inputs", ONNX_INPUT,
            "--rename-outputs", ONNX_OUTPUT,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not target.is_file():
            raise ExportError(f"tf2onnx failed:\n{result.stderr[-2000:]}")
        shutil.rmtree(saved, ignore_errors=True)
    return target


def onnx_predict(onnx_path: Path, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Probabilities from ONNX Runtime, the way the workers compute them."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    chunks = [
        session.run(None, {name: images[i : i + batch]})[0] for i in range(0, len(images), batch)
    ]
    return np.concatenate(chunks)


def onnx_signature(onnx_path: Path) -> dict[str, object]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inp, out = session.get_inputs()[0], session.get_outputs()[0]
    return {
        "input_name": inp.name,
        "input_shape": [d if isinstance(d, int) else None for d in inp.shape],
        "input_type": inp.type,
        "output_name": out.name,
        "output_shape": [d if isinstance(d, int) else None for d in out.shape],
        "output_type": out.type,
        "opset": ONNX_OPSET,
    }
