"""Write the README's sample images (run once; the outputs are committed).

    python -m examples.make_samples      # -> examples/digit.png, a.png, b.jpg, postcode.png

MNIST *test* digits drawn the way mail arrives, by the evaluation set generator
(`evaluation.generate`): dark ink on paper, off-centre, a JPEG among them, a five-digit code.
Each is checked with the workers' own model (`OfflineReader`) so the README's examples read
what they show.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from common.settings import ServiceSettings
from evaluation.generate import postcode, wild_digit
from evaluation.mnist import load
from evaluation.run import OfflineReader, default_model

HERE = Path(__file__).resolve().parent
SAMPLES = {  # file -> (MNIST test index, evaluation style)
    "digit.png": (0, "paper"),  # a 7
    "a.png": (1, "paper"),  # a 2
    "b.jpg": (2, "jpeg"),  # a 1
}
POSTCODE = "90210"


def main() -> None:
    images, labels = load("test")
    reader = OfflineReader(default_model(), ServiceSettings().review_threshold)
    rng = np.random.default_rng(17)
    for name, (index, style) in SAMPLES.items():
        data, _ = wild_digit(rng, images[index], style)
        if name.endswith(".jpg"):  # the style's canvas is RGB: store it as a real JPEG
            buf = io.BytesIO()
            Image.open(io.BytesIO(data)).convert("RGB").save(buf, "JPEG", quality=85)
            data = buf.getvalue()
        else:
            data = _small_png(data)
        digit, _, _ = reader.digit(data)
        assert digit == str(labels[index]), (name, digit, labels[index])
        (HERE / name).write_bytes(data)
    picks = [int(np.flatnonzero(labels == int(c))[5]) for c in POSTCODE]
    for _ in range(20):
        data = _small_png(postcode(rng, [images[i] for i in picks])[0])
        if reader.read_postcode(data)["text"] == POSTCODE:
            break
    else:
        raise SystemExit("no postcode sample read correctly in 20 tries")
    (HERE / "postcode.png").write_bytes(data)
    for path in sorted(HERE.glob("*.*g")):
        print(f"{path.name}: {path.stat().st_size} bytes")


def _small_png(data: bytes) -> bytes:
    """Greyscale, 8 levels: a few KB instead of ~100 KB of sensor noise, still mail-like."""
    grey = ImageOps.posterize(Image.open(io.BytesIO(data)).convert("L"), 3)
    buf = io.BytesIO()
    grey.save(buf, "PNG", optimize=True)
    return buf.getvalue()


if __name__ == "__main__":
    main()
