"""Robustness sets: digits and postal codes in writers' styles the model never trained on.

Every image comes from `training.fonts.HELDOUT_FONTS` (handwriting fonts kept out of
training), rendered the way a sorting-line camera or an old scanner delivers it: dark ink on
light paper, 40-120 px high, PNG or JPEG, generous margins or tight crops. None of it comes
from MNIST's writers. Sets (`labels.csv` has the same columns as `evaluation.generate`):

- `fonts`: single digits, camera-like (slant, stroke width, blur, sensor noise, JPEG);
- `lowres`: single digits scanned at 8x8 (counts of a 32x32 bitmap, 17 grey levels) or 16x16
  and upsampled, the blocky or smeared digits of old form readers;
- `codes`: five-digit codes, one writer (font) per code, spacing from overlapping to wide;
- `lowres_codes`: five 8x8 or 16x16 scans side by side;
- `directory_codes`: like `codes`, but the code is drawn from a directory of valid codes
  (only with `--directory`), for directory-constrained decoding.

`--split dev` and `--split test` differ only in the random seed: tune on dev, report test.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from training.fonts import HELDOUT_FONTS, font_paths, glyph

Rng = np.random.Generator
CODE_LENGTH = 5
SEEDS = {"dev": 101, "test": 202}
CODE_SETS = ("codes", "lowres_codes", "directory_codes")
"""Sets whose images are whole postal codes (scored by exact match)."""


def _resize(ink: np.ndarray, w: int, h: int, resample=Image.Resampling.BICUBIC) -> np.ndarray:
    im = Image.fromarray(np.clip(ink * 255, 0, 255).astype(np.uint8))
    return np.asarray(im.resize((max(1, w), max(1, h)), resample), np.float32) / 255.0


def _styled(rng: Rng, ink: np.ndarray) -> np.ndarray:
    """One writer's hand on one day: slant, a small rotation, pen width."""
    im = Image.fromarray(np.clip(ink * 255, 0, 255).astype(np.uint8))
    h, w = ink.shape
    shear = np.tan(np.radians(rng.uniform(-12, 12)))
    pad = int(abs(shear) * h) + 4
    im = im.transform(
        (w + 2 * pad, h),
        Image.Transform.AFFINE,
        (1, shear, -pad - shear * h / 2, 0, 1, 0),
        Image.Resampling.BICUBIC,
    )
    im = im.rotate(rng.uniform(-6, 6), Image.Resampling.BICUBIC, expand=True)
    pen = rng.choice([-1, 0, 0, 1, 2])  # pen width change at glyph scale (~10 px strokes)
    if pen > 0:
        im = im.filter(ImageFilter.MaxFilter(2 * int(pen) + 1))
    elif pen < 0:
        im = im.filter(ImageFilter.MinFilter(3))
    out = np.asarray(im, np.float32) / 255.0
    ys, xs = np.nonzero(out > 0.05)
    if ys.size == 0:  # an erosion ate a hairline glyph: keep the unstyled one
        return ink
    return out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _camera(rng: Rng, ink: np.ndarray, height: int) -> np.ndarray:
    """Ink coverage scaled to `height` px (width varies a little with the writer)."""
    h, w = ink.shape
    s = height / h
    return _resize(ink, round(w * s * rng.uniform(0.85, 1.15)), height)


def _scan(rng: Rng, ink: np.ndarray, height: int) -> np.ndarray:
    """An 8x8 (17 levels) or 16x16 scan of the digit, upsampled to about `height` px."""
    h, w = ink.shape
    s = 32 / max(h, w)
    small = _resize(ink, round(w * s), round(h * s)) > 0.5
    bitmap = np.zeros((32, 32), np.float32)
    y0, x0 = (32 - small.shape[0]) // 2, (32 - small.shape[1]) // 2
    bitmap[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    cells = int(rng.choice([8, 16]))
    block = 32 // cells
    counts = bitmap.reshape(cells, block, cells, block).sum(axis=(1, 3))
    scanned = counts / (block * block)
    if cells == 8:
        scanned = np.round(scanned * 16) / 16
    up = rng.choice([Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC])
    side = int(height * rng.uniform(0.9, 1.2))
    return np.clip(_resize(scanned, side, side, up), 0, 1)


def _on_paper(rng: Rng, coverage: np.ndarray, digit_px: int, tight: bool) -> Image.Image:
    """Dark ink on light paper with a margin (or a tight crop), blur, noise."""
    if tight:
        m = [int(rng.integers(0, 3)) for _ in range(4)]
    else:
        m = [int(digit_px * rng.uniform(0.15, 0.8)) + 2 for _ in range(4)]
    h, w = coverage.shape
    canvas = np.zeros((h + m[0] + m[1], w + m[2] + m[3]), np.float32)
    canvas[m[0] : m[0] + h, m[2] : m[2] + w] = coverage
    paper = rng.uniform(190, 250)
    ink = rng.uniform(15, 90)
    across = np.arange(canvas.shape[1], dtype=np.float32)[None, :] / canvas.shape[1]
    shade = rng.uniform(0, 25) * across * rng.choice([-1, 1])
    img = (paper + shade) * (1 - canvas) + ink * canvas
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    blur = rng.uniform(0, 1.2) * digit_px / 60
    if blur > 0.3:
        im = im.filter(ImageFilter.GaussianBlur(blur))
    noisy = np.asarray(im, np.float32) + rng.normal(0, rng.uniform(1.5, 7), (im.height, im.width))
    return Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))


def _encode(rng: Rng, im: Image.Image) -> tuple[bytes, str]:
    buf = io.BytesIO()
    if rng.random() < 0.5:
        im.save(buf, "JPEG", quality=int(rng.integers(50, 95)))
        return buf.getvalue(), "jpg"
    im.save(buf, "PNG")
    return buf.getvalue(), "png"


def single_digit(rng: Rng, font: Path, digit: int, lowres: bool) -> tuple[bytes, str]:
    height = int(rng.integers(40, 121))
    ink = _styled(rng, glyph(font, digit))
    coverage = _scan(rng, ink, height) if lowres else _camera(rng, ink, height)
    return _encode(rng, _on_paper(rng, coverage, height, tight=rng.random() < 0.35))


def code_image(rng: Rng, font: Path, text: str, lowres: bool) -> tuple[bytes, str]:
    """One writer's code: digits side by side, gaps from slight overlap to half a digit."""
    height = int(rng.integers(40, 121))
    parts = []
    for ch in text:
        ink = _styled(rng, glyph(font, int(ch)))
        h = int(height * rng.uniform(0.9, 1.1))
        parts.append(_scan(rng, ink, h) if lowres else _camera(rng, ink, h))
    gaps = [int(height * rng.uniform(-0.04, 0.5)) for _ in parts[1:]]
    width = sum(p.shape[1] for p in parts) + sum(gaps)
    rows = max(p.shape[0] for p in parts) + int(0.15 * height)
    canvas = np.zeros((rows, width + 4), np.float32)
    x = 0
    for k, part in enumerate(parts):
        h, w = part.shape
        y = int(rng.integers(0, rows - h + 1))
        canvas[y : y + h, x : x + w] = np.maximum(canvas[y : y + h, x : x + w], part)
        x += w + (gaps[k] if k < len(gaps) else 0)
    return _encode(rng, _on_paper(rng, canvas, height, tight=rng.random() < 0.2))


def read_directory(path: Path, length: int = CODE_LENGTH) -> list[str]:
    codes = [line.strip() for line in path.read_text().splitlines()]
    return sorted({c for c in codes if len(c) == length and c.isdigit()})


def generate(
    out: Path,
    split: str,
    n_digits: int,
    n_codes: int,
    directory: Path | None = None,
) -> dict:
    """Write the sets under `out` with `labels.csv` and `manifest.json`."""
    rng = np.random.default_rng(SEEDS[split])
    fonts = font_paths(HELDOUT_FONTS)
    rows: list[tuple[str, str, str, str]] = []

    def write(set_name: str, i: int, data: bytes, ext: str, font: Path, label: str) -> None:
        rel = f"{set_name}/{i:05d}.{ext}"
        (out / set_name).mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
        rows.append((rel, set_name, font.stem, label))

    for set_name, lowres in (("fonts", False), ("lowres", True)):
        for i in range(n_digits):
            font, digit = fonts[int(rng.integers(len(fonts)))], i % 10
            data, ext = single_digit(rng, font, digit, lowres)
            write(set_name, i, data, ext, font, str(digit))
    for set_name, lowres in (("codes", False), ("lowres_codes", True)):
        for i in range(n_codes):
            font = fonts[int(rng.integers(len(fonts)))]
            text = "".join(str(d) for d in rng.integers(0, 10, CODE_LENGTH))
            data, ext = code_image(rng, font, text, lowres)
            write(set_name, i, data, ext, font, text)
    valid = read_directory(directory) if directory else []
    for i in range(n_codes if valid else 0):
        font = fonts[int(rng.integers(len(fonts)))]
        text = valid[int(rng.integers(len(valid)))]
        data, ext = code_image(rng, font, text, lowres=bool(rng.random() < 0.5))
        write("directory_codes", i, data, ext, font, text)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "set", "category", "label"])
        writer.writerows(rows)
    counts: dict[str, int] = {}
    for _, set_name, _, _ in rows:
        counts[set_name] = counts.get(set_name, 0) + 1
    manifest = {
        "kind": "robustness",
        "split": split,
        "seed": SEEDS[split],
        "fonts": [f.name for f in fonts],
        "directory": str(directory) if directory else None,
        "counts": counts,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
