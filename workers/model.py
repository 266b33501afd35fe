"""The served model's lifecycle: load a registry version once, warm it up, predict batches.

ONNX Runtime runs the Keras-trained network (exported by `training`): same outputs,
a fraction of TensorFlow's start-up time and memory (see docs/DESIGN.md). `predict` returns
CALIBRATED probabilities (`common.decoding.calibrate` with the temperature in the version's
metadata.json; none recorded = unchanged): every confidence, review decision and code
probability downstream uses them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.contract import IMAGE_SIDE
from common.decoding import calibrate, temperature_from_metadata
from common.registry import resolve


@dataclass(frozen=True)
class ModelRef:
    """Which registry version a process serves, and where its files are (not the HTTP
    schema `api.schemas.ModelInfo`, which describes a model to clients)."""

    name: str
    version: str
    path: Path


class DigitModel:
    """uint8 (N, 28, 28) white-on-black images -> (N, 10) float32 calibrated probabilities."""

    def __init__(self, info: ModelRef, threads: int = 1) -> None:
        import onnxruntime as ort  # imported here: only worker processes pay for it

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.info = info
        self._session = ort.InferenceSession(
            str(info.path / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self.temperature = temperature_from_metadata(self.metadata())
        """From metadata.json `calibration` (1.0 when absent); a bad value fails the load."""

    @classmethod
    def load(cls, models_dir: str | Path, name: str, version: str, threads: int = 1) -> DigitModel:
        path = resolve(Path(models_dir), name, version)
        model = cls(ModelRef(name=name, version=path.name, path=path), threads)
        model.warm_up()
        return model

    def warm_up(self) -> None:
        """First calls allocate buffers; do them before the worker reports ready."""
        for size in (1, 32):
            self.predict(np.zeros((size, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Calibrated probabilities: what the service answers with."""
        return calibrate(self.predict_raw(images), self.temperature)

    def predict_raw(self, images: np.ndarray) -> np.ndarray:
        """The ONNX model's own softmax output, before calibration."""
        if len(images) == 0:
            return np.zeros((0, 10), dtype=np.float32)
        batch = images.reshape(-1, IMAGE_SIDE, IMAGE_SIDE, 1).astype(np.float32) / 255.0
        return self._session.run(None, {self._input: batch})[0]

    def metadata(self) -> dict:
        path = self.info.path / "metadata.json"
        return json.loads(path.read_text()) if path.exists() else {}
