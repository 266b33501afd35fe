"""Per-image cost of decode + normalise on one core: `python -m evaluation speed`."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from common.imaging import decode, prepare_digit
from common.segmentation import segment


def _digit_canvas(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    im = Image.new("RGB", size, (225, 215, 190))
    x0, y0, x1, y1 = box
    ImageDraw.Draw(im).ellipse(box, outline=(30, 30, 90), width=max(3, (x1 - x0) // 8))
    ImageDraw.Draw(im).line((x1, y0, x1, y1 + (y1 - y0) // 3), fill=(30, 30, 90), width=6)
    return im


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _time(fn: Callable[[], object], seconds: float = 1.0) -> float:
    """Median per-call CPU microseconds (process time: robust to a busy shared machine)."""
    fn()
    samples = []
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        started = time.process_time()
        for _ in range(10):
            fn()
        samples.append((time.process_time() - started) / 10)
    return float(np.median(samples)) * 1e6


def cases() -> dict[str, bytes]:
    mnist_like = np.zeros((28, 28), np.uint8)
    mnist_like[4:24, 12:16] = 255
    small = Image.fromarray(mnist_like)
    off_centre = np.zeros((28, 28), np.uint8)
    off_centre[1:12, 1:5] = 255
    photo = _digit_canvas((640, 480), (220, 120, 380, 330))
    code = Image.new("RGB", (640, 160), (235, 235, 225))
    for i in range(5):
        x = 40 + i * 115
        ImageDraw.Draw(code).ellipse((x, 30, x + 70, 130), outline=(20, 20, 20), width=9)
    return {
        "28x28 PNG, MNIST-like (pass-through)": _encode(small, "PNG"),
        "28x28 PNG, off-centre (full normalisation)": _encode(Image.fromarray(off_centre), "PNG"),
        "640x480 JPEG q85, one digit": _encode(photo, "JPEG", quality=85),
        "640x480 PNG, one digit": _encode(photo, "PNG"),
        "1600x1200 JPEG q85, one digit": _encode(photo.resize((1600, 1200)), "JPEG", quality=85),
        "640x160 JPEG postcode (segment)": _encode(code, "JPEG", quality=85),
    }


def main() -> str:
    lines = [
        "| input | decode µs | decode + normalise (or segment) µs |",
        "|---|---:|---:|",
    ]
    for name, data in cases().items():
        dec = _time(lambda data=data: decode(data))
        if "postcode" in name:
            full = _time(lambda data=data: segment(decode(data), expected=5))
        else:
            full = _time(lambda data=data: prepare_digit(data))
        lines.append(f"| {name} | {dec:,.0f} | {full:,.0f} |")
    return "\n".join(lines)
