"""Accuracy of registry versions on MNIST test images under scan-like perturbations.

Used to decide whether training augmentation earns its place (DESIGN notes). The perturbations
are PIL filters, deliberately not the training augmentation code, so the check is not circular:
`python -m training.robustness_check --models-dir models --versions production /tmp/other/1`
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from common import registry
from training.data import load_mnist
from training.export import onnx_predict

PERTURBATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "clean": lambda im: im,
    "thick (max 3x3)": lambda im: im.filter(ImageFilter.MaxFilter(3)),
    "thin (min 3x3 blend 0.5)": lambda im: Image.blend(
        im, im.filter(ImageFilter.MinFilter(3)), 0.5
    ),
    "blur (gauss 1.0)": lambda im: im.filter(ImageFilter.GaussianBlur(1.0)),
    "rotate +15": lambda im: im.rotate(15, resample=Image.Resampling.BILINEAR),
    "rotate -15": lambda im: im.rotate(-15, resample=Image.Resampling.BILINEAR),
    "shift 2px": lambda im: im.transform(im.size, Image.Transform.AFFINE, (1, 0, -2, 0, 1, 2)),
}


def perturbed(images: np.ndarray, change: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    out = np.stack([np.asarray(change(Image.fromarray(image))) for image in images])
    return (out.astype(np.float32) / 255.0)[..., None]


def folder_of(spec: str, models_dir: Path, name: str) -> Path:
    path = Path(spec)
    return path if path.is_dir() else registry.resolve(models_dir, name, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=registry.default_models_dir())
    parser.add_argument("--name", default="mnist_cnn")
    parser.add_argument("--versions", nargs="+", default=[registry.PRODUCTION])
    args = parser.parse_args()
    data = load_mnist()
    folders = [folder_of(v, args.models_dir, args.name) for v in args.versions]
    print(f"{'perturbation':<26}" + "".join(f"  {spec:>26}" for spec in args.versions))
    for label, change in PERTURBATIONS.items():
        x = perturbed(data.x_test, change)
        cells = [
            float((onnx_predict(f / "model.onnx", x).argmax(1) == data.y_test).mean())
            for f in folders
        ]
        print(f"{label:<26}" + "".join(f"  {c:>26.2%}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
