"""Request bodies the benchmark sends: small digit PNGs and 640x480 phone-like JPEG photos.

Generated, not downloaded, so the benchmark runs anywhere with Pillow. Digits are drawn
with Pillow's own font, which is enough: the benchmark measures speed, not accuracy.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

_FONT_SIZE = 22


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def digit_png(digit: int, seed: int = 0) -> bytes:
    """One 28x28 white-on-black PNG, as an MNIST-style client would send."""
    image = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(image).text((8, 2), str(digit), fill=255, font=_font(_FONT_SIZE))
    rng = np.random.default_rng(seed)
    array = np.asarray(image, dtype=np.int16) + rng.integers(0, 12, (28, 28))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def photo_jpeg(digit: int, seed: int = 0) -> bytes:
    """A 640x480 photo of a dark digit on light, unevenly lit, noisy paper (quality 85)."""
    rng = np.random.default_rng(seed)
    image = Image.new("L", (640, 480), 0)
    ImageDraw.Draw(image).text((230, 90), str(digit), fill=255, font=_font(300))
    ink = np.asarray(image.filter(ImageFilter.GaussianBlur(2)), dtype=np.float32) / 255.0
    light = np.linspace(225, 175, 640)[None, :] * np.ones((480, 1))
    paper = light + rng.normal(0, 6, (480, 640))
    grey = paper * (1 - 0.8 * ink)
    rgb = np.stack([grey, grey * 0.97, grey * 0.92], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").save(
        buffer, format="JPEG", quality=85
    )
    return buffer.getvalue()


def mnist_pngs(count: int, fallback: bool = True) -> list[bytes]:
    """Real MNIST test digits as PNGs (the common client; MNIST-framed, so the API passes them
    through its normalisation); drawn digits if MNIST is absent, unless `fallback` is off."""
    try:
        from training.data import load_mnist  # no TensorFlow: reads a cached npz

        images = load_mnist().x_test[:count]
    except Exception:  # MNIST not cached and not fetchable: speed is what matters here
        if not fallback:
            raise
        return drawn_pngs(count)
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image, "L").save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def drawn_pngs(count: int) -> list[bytes]:
    """Drawn 28x28 digits, not MNIST-framed: the full normalisation, as real mail takes it."""
    return [digit_png(i % 10, seed=i) for i in range(count)]


def batch_json(pngs: list[bytes]) -> bytes:
    """`{"images": [base64, ...]}`: the JSON batch form of the API."""
    items = ",".join(f'"{base64.b64encode(p).decode()}"' for p in pngs)
    return f'{{"images":[{items}]}}'.encode()


def binary_infer(pngs: list[bytes]) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """The same images as one Open Inference Protocol request with the binary tensor
    extension: a UINT8 [N, 28, 28] input (no image decoding in the API) and binary outputs.
    Returns (body, extra headers). The PNGs are decoded here, once, by the client."""
    import orjson

    images = np.stack([np.asarray(Image.open(io.BytesIO(p)).convert("L")) for p in pngs])
    raw = images.astype(np.uint8).tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [len(pngs), 28, 28],
                    "datatype": "UINT8",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return header + raw, (("Inference-Header-Content-Length", str(len(header))),)
