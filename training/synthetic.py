"""Synthetic training styles: what real mail looks like after the service's own normaliser.

MNIST's writers are one population, neatly scanned. Real codes arrive blocky from low-
resolution scanners, smeared by cameras, slanted, thick or thin, in allographs MNIST rarely
has (a 1 with a long lead-in stroke, open 4s, straight-stemmed 9s). Each example here is made
the way the service will see one: a source digit (an MNIST *training* digit or a glyph from
`training.fonts.TRAIN_FONTS`) -> writer style (slant, rotation, pen width, elastic wobble à la
Simard 2003) -> a capture (camera at 24-110 px, or an 8x8-16x16 scan upsampled) -> dark ink on
paper with blur and noise -> `common.imaging.normalise`, the API's normaliser. The robustness
sets use other fonts and their own renderer (`evaluation.robust`), so they stay unseen.
Everything is seeded: the same arguments give the same arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from common.imaging import normalise
from training.fonts import TRAIN_FONTS, crop_ink, font_paths, glyph

Rng = np.random.Generator
CHUNK = 2000


@dataclass(frozen=True)
class SyntheticConfig:
    mnist_scans: int = 60_000
    """Re-captured MNIST training digits (low-resolution scans and camera shots)."""
    font_digits: int = 50_000
    """Digits drawn from the training fonts."""
    seed: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _to_image(ink: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(ink * 255 + 0.5, 0, 255).astype(np.uint8))


def elastic(rng: Rng, ink: np.ndarray, strength: float) -> np.ndarray:
    """Smooth random displacement (a 4x4 field upsampled), `strength` in pixels of the image."""
    h, w = ink.shape
    fields = []
    for _ in range(2):
        coarse = rng.uniform(-1, 1, (4, 4)).astype(np.float32)
        fields.append(np.asarray(Image.fromarray(coarse, "F").resize((w, h), Image.BICUBIC)))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sy = np.clip(yy + strength * fields[0], 0, h - 1)
    sx = np.clip(xx + strength * fields[1], 0, w - 1)
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = sy - y0, sx - x0
    top = ink[y0, x0] * (1 - fx) + ink[y0, x1] * fx
    bottom = ink[y1, x0] * (1 - fx) + ink[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def style(rng: Rng, ink: np.ndarray, stroke_px: float) -> np.ndarray:
    """Slant, rotation, aspect, pen width and wobble; `stroke_px` is the source's stroke width."""
    h, w = ink.shape
    pad = max(h, w) // 3 + 2
    ink = np.pad(ink, pad)
    if rng.random() < 0.7:
        ink = elastic(rng, ink, rng.uniform(0.02, 0.07) * max(h, w))
    im = _to_image(ink)
    H, W = ink.shape
    shear = np.tan(np.radians(rng.uniform(-18, 18)))
    aspect = rng.uniform(0.75, 1.25)
    cx, cy = W / 2, H / 2
    # inverse affine around the centre: x_in = (x - cx) / aspect + shear * (y - cy) + cx
    im = im.transform(
        (W, H),
        Image.Transform.AFFINE,
        (1 / aspect, shear, cx - cx / aspect - shear * cy, 0, 1, 0),
        Image.Resampling.BILINEAR,
    )
    im = im.rotate(rng.uniform(-12, 12), Image.Resampling.BILINEAR)
    pen = rng.uniform(-0.45, 0.9) * stroke_px
    if pen >= 1:
        im = im.filter(ImageFilter.MaxFilter(2 * int(pen / 2) + 1))
    elif pen <= -1 and stroke_px >= 4:
        im = im.filter(ImageFilter.MinFilter(3))
    out = crop_ink(np.asarray(im, np.float32) / 255.0)
    return out if out.size > 4 else crop_ink(ink)


def capture(rng: Rng, ink: np.ndarray) -> tuple[np.ndarray, int]:
    """(coverage at capture size, digit height in px): a camera shot or a coarse scan."""
    h, w = ink.shape
    if rng.random() < 0.5:
        # form readers scanned at 8x8 or 16x16: those two get most of the weight
        side = int(rng.choice([8, 16])) if rng.random() < 0.6 else int(rng.integers(9, 16))
        s = side / max(h, w)
        small = _to_image(ink).resize(
            (max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BOX
        )
        levels = int(rng.choice([2, 5, 17, 256])) if side >= 12 else int(rng.choice([17, 256]))
        cov = np.round(np.asarray(small, np.float32) / 255.0 * (levels - 1)) / (levels - 1)
        height = int(rng.integers(28, 111))
        k = height / cov.shape[0]
        up = rng.choice(
            [Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC]
        )
        im = _to_image(cov).resize((max(1, round(cov.shape[1] * k)), height), up)
        return np.asarray(im, np.float32) / 255.0, height
    height = int(rng.integers(24, 111))
    s = height / h
    im = _to_image(ink).resize((max(1, round(w * s)), height), Image.Resampling.BICUBIC)
    return np.asarray(im, np.float32) / 255.0, height


def on_paper(rng: Rng, cov: np.ndarray, height: int) -> np.ndarray:
    """Greyscale capture: dark ink on light paper, a margin, blur, sensor noise."""
    m = [int(rng.integers(0, max(2, int(height * 0.6)))) for _ in range(4)]
    cov = np.pad(cov, ((m[0], m[1]), (m[2], m[3])))
    paper, ink = rng.uniform(170, 255), rng.uniform(0, 110)
    img = paper * (1 - cov) + ink * cov
    blur = rng.uniform(0, 1.5) * height / 60
    if blur > 0.3:
        img = np.asarray(
            Image.fromarray(img.astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur)),
            np.float32,
        )
    img = img + rng.normal(0, rng.uniform(0, 8), img.shape)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _one(rng: Rng, ink: np.ndarray, stroke_px: float, attempts: int = 4) -> np.ndarray:
    """One styled capture; a draw that loses the digit (a hairline eroded away, a scan that
    rounds to nothing) is drawn again, never kept as a blank with a digit's label."""
    for _ in range(attempts):
        cov, height = capture(rng, style(rng, ink, stroke_px))
        normalised = normalise(on_paper(rng, cov, height))
        if not normalised.blank:
            return normalised.image
    cov, height = capture(rng, crop_ink(ink))
    return normalise(on_paper(rng, cov, height)).image


def _chunk(args: tuple[str, int, int, np.ndarray | None, np.ndarray | None]) -> np.ndarray:
    kind, seed, n, digits, labels = args
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 28, 28), np.uint8)
    fonts = font_paths(TRAIN_FONTS) if kind == "font" else []
    for i in range(n):
        if kind == "font":
            ink = glyph(fonts[int(rng.integers(len(fonts)))], int(labels[i]))
            out[i] = _one(rng, ink, stroke_px=ink.shape[0] * 0.1)
        else:
            out[i] = _one(rng, crop_ink(digits[i].astype(np.float32) / 255.0), stroke_px=2.5)
    return out


def build(
    config: SyntheticConfig, x_train: np.ndarray, y_train: np.ndarray, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(images (N,28,28) uint8 as the normaliser outputs them, labels (N,)) — seeded."""
    rng = np.random.default_rng(config.seed)
    pick = rng.integers(0, len(x_train), config.mnist_scans)
    font_labels = np.arange(config.font_digits) % 10
    jobs = []
    for start in range(0, config.mnist_scans, CHUNK):
        idx = pick[start : start + CHUNK]
        jobs.append(("mnist", config.seed * 1000 + len(jobs), len(idx), x_train[idx], None))
    for start in range(0, config.font_digits, CHUNK):
        labs = font_labels[start : start + CHUNK]
        jobs.append(("font", config.seed * 1000 + len(jobs), len(labs), None, labs))
    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        parts = list(pool.map(_chunk, jobs))
    x = np.concatenate(parts) if parts else np.zeros((0, 28, 28), np.uint8)
    y = np.concatenate([y_train[pick], font_labels]).astype(np.int64)
    return x, y


def cached_build(
    config: SyntheticConfig, x_train: np.ndarray, y_train: np.ndarray, cache_dir: Path
) -> tuple[np.ndarray, np.ndarray]:
    """`build`, kept on disk under a key of the config, this file and the source digits."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    digest.update(Path(__file__).read_bytes())
    digest.update(json.dumps(TRAIN_FONTS, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(x_train).tobytes())
    path = cache_dir / f"synthetic-{digest.hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path) as npz:
            return npz["x"], npz["y"]
    x, y = build(config, x_train, y_train)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, x=x, y=y)
    os.replace(tmp, path)
    return x, y
