"""Robustness scores of a model file: accuracy on each set of `evaluation.robust`.

Training records them in a version's metadata and the promotion gate compares them with
production's. Sets are generated once per split into the data cache (they depend only on the
seed, the held-out fonts and `evaluation/robust.py`). Codes are read as the service reads
them without a directory: segmentation, then `common.decoding.decode_code`.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from common.decoding import decode_code
from common.imaging import decode, normalise
from common.segmentation import segment
from evaluation import robust

N_DIGITS = 2000
N_CODES = 600


def sets_dir(cache_dir: Path, split: str = "test") -> Path:
    """Generated (once) robustness sets for `split`, keyed by the generator's code."""
    key = hashlib.sha256(Path(robust.__file__).read_bytes()).hexdigest()[:12]
    out = cache_dir / f"robustness-{split}-{N_DIGITS}-{N_CODES}-{key}"
    if not (out / "manifest.json").is_file():
        robust.generate(out, split, N_DIGITS, N_CODES)
    return out


class Prepared:
    """The sets decoded, normalised and segmented once, to score several models."""

    def __init__(self, sets: Path) -> None:
        with open(sets / "labels.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        self.digits: dict[str, tuple[list[np.ndarray], list[int]]] = {}
        self.codes: dict[str, list[tuple[str, int, int]]] = {}
        crops: list[np.ndarray] = []
        for row in rows:
            gray = decode((sets / row["file"]).read_bytes())
            if row["set"] in robust.CODE_SETS:
                seg = segment(gray, expected=robust.CODE_LENGTH)
                self.codes.setdefault(row["set"], []).append(
                    (row["label"], len(crops), len(seg.crops))
                )
                crops += [c.image for c in seg.crops]
            else:
                images, labels = self.digits.setdefault(row["set"], ([], []))
                images.append(normalise(gray).image)
                labels.append(int(row["label"]))
        self.crops = np.stack(crops) if crops else np.zeros((0, 28, 28), np.uint8)

    def score(self, predict) -> dict[str, float]:
        """{set: accuracy} (codes: exact match) for `predict`: uint8 (N,28,28) -> (N,10)."""
        scores: dict[str, float] = {}
        for name, (images, labels) in self.digits.items():
            p = predict(np.stack(images))
            scores[name] = round(float((p.argmax(1) == np.array(labels)).mean()), 6)
        read = predict(self.crops) if len(self.crops) else np.zeros((0, 10), np.float32)
        for name, items in self.codes.items():
            right = [
                decode_code(read[start : start + n]).text == label for label, start, n in items
            ]
            scores[name] = round(float(np.mean(right)), 6)
        return scores


def dev_digits(cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The dev split's single digits, normalised: (images uint8 (N,28,28), labels) — the
    out-of-MNIST share of the calibration set (the test split is never used for fitting)."""
    prepared = Prepared(sets_dir(cache_dir, "dev"))
    images = [img for imgs, _ in prepared.digits.values() for img in imgs]
    labels = [lab for _, labs in prepared.digits.values() for lab in labs]
    return np.stack(images), np.array(labels, np.int64)


def onnx_predictor(model_path: Path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def predict(images: np.ndarray) -> np.ndarray:
        x = images.astype(np.float32)[..., None] / 255.0
        return session.run(None, {name: x})[0]

    return predict


def evaluate_models(sets: Path, models: dict[str, Path]) -> dict[str, Any]:
    """{label: {set: accuracy}} for each model file, on one preparation of the sets."""
    prepared = Prepared(sets)
    return {label: prepared.score(onnx_predictor(path)) for label, path in models.items()}
