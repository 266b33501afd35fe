"""Generate realistic evaluation images from MNIST digits.

Sets: `clean` (MNIST 28x28 as PNG), `wild` single digits in sub-categories (each with
rotation ±12°, size 40–180 px and an off-centre place in a larger canvas, plus one dominant
real-world effect), and `postcodes` (five digits with uneven gaps, jitter, size variation and
the same paper effects). Use `--split train` for the dev set you tune on and `--split test`
only for the numbers you report.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from evaluation.mnist import load

WILD_CATEGORIES = (
    "paper",
    "coloured",
    "gradient",
    "inverted",
    "noisy",
    "blurred",
    "jpeg",
    "transparent",
)
POSTCODE_LENGTH = 5
Rng = np.random.Generator


def _ink_of(digit: np.ndarray, size: int, angle: float) -> np.ndarray:
    """MNIST digit -> ink coverage 0..1, longer side ~`size` px, rotated (expanded canvas)."""
    ys, xs = np.nonzero(digit > 0)
    crop = digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    s = size / max(h, w)
    im = Image.fromarray(crop).resize(
        (max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BICUBIC
    )
    im = im.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=0)
    return np.asarray(im, dtype=np.float32) / 255.0


def _paper(rng: Rng, h: int, w: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(paper RGB float (h,w,3) 0..255, ink RGB (3,))."""
    dark_inks = np.array([[20, 20, 25], [25, 35, 110], [90, 20, 25], [40, 40, 40]], np.float32)
    ink = dark_inks[rng.integers(len(dark_inks))] + rng.uniform(-15, 15, 3)
    if kind == "coloured":
        base = rng.uniform(150, 245, 3)
    elif kind == "inverted":
        base = rng.uniform(0, 60, 3) + np.zeros(3)
        ink = rng.uniform(200, 255) * np.ones(3) - rng.uniform(0, 30, 3)
    else:
        base = np.full(3, rng.uniform(200, 255)) - rng.uniform(0, 12, 3)
    paper = np.ones((h, w, 3), np.float32) * base
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h) + 0.5
        depth = rng.uniform(60, 130)  # shadow: paper darkens by up to this much
        paper = paper - depth * np.clip(ramp, 0, 1)[..., None]
    return np.clip(paper, 0, 255), np.clip(ink, 0, 255)


def _compose(
    rng: Rng, coverage: np.ndarray, kind: str, digit_px: int
) -> tuple[np.ndarray | None, np.ndarray, str]:
    """Ink coverage on a canvas -> (RGBA or None, RGB uint8 image, file extension).

    `digit_px` (the digits' size) scales the blur, so a wide postcode is as sharp as one digit.
    """
    h, w = coverage.shape
    paper, ink = _paper(rng, h, w, kind)
    if kind == "transparent":
        rgba = np.zeros((h, w, 4), np.uint8)
        rgba[..., :3] = ink.astype(np.uint8)
        rgba[..., :3] *= (coverage > 0)[..., None].astype(np.uint8)  # canvas: (0,0,0,0) outside
        rgba[..., 3] = np.clip(coverage * 255 + 0.5, 0, 255).astype(np.uint8)
        return rgba, rgba[..., :3], "png"
    a = coverage[..., None] * rng.uniform(0.85, 1.0)
    img = paper * (1 - a) + ink * a
    if kind == "blurred":
        radius = rng.uniform(0.8, 2.5) * digit_px / 100
        img = np.asarray(
            Image.fromarray(img.astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius)),
            np.float32,
        )
    if kind == "noisy":
        img = img + rng.normal(0, rng.uniform(8, 22), img.shape)
    else:
        img = img + rng.normal(0, 2.5, img.shape)  # every sensor has a little
    ext = "jpg" if kind in ("jpeg", "gradient", "coloured") else "png"
    return None, np.clip(img + 0.5, 0, 255).astype(np.uint8), ext


def _encode(rgba: np.ndarray | None, rgb: np.ndarray, ext: str, rng: Rng) -> bytes:
    buf = io.BytesIO()
    if rgba is not None:
        Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    elif ext == "jpg":
        Image.fromarray(rgb).save(buf, "JPEG", quality=int(rng.integers(45, 91)))
    else:
        Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def wild_digit(rng: Rng, digit: np.ndarray, kind: str) -> tuple[bytes, str]:
    """One single digit as the post office might send it."""
    size = int(rng.integers(40, 181))
    ink = _ink_of(digit, size, rng.uniform(-12, 12))
    h, w = ink.shape
    ch = int(h * rng.uniform(1.3, 2.2)) + 8
    cw = int(w * rng.uniform(1.3, 2.2)) + 8
    canvas = np.zeros((ch, cw), np.float32)
    y, x = int(rng.integers(0, ch - h + 1)), int(rng.integers(0, cw - w + 1))
    canvas[y : y + h, x : x + w] = ink
    rgba, rgb, ext = _compose(rng, canvas, kind, size)
    return _encode(rgba, rgb, ext, rng), ext


def postcode(rng: Rng, digits: list[np.ndarray]) -> tuple[bytes, str]:
    """Digits side by side with uneven gaps, vertical jitter and size variation."""
    height = int(rng.integers(40, 121))
    inks = [_ink_of(d, int(height * rng.uniform(0.85, 1.15)), rng.uniform(-6, 6)) for d in digits]
    gaps = [int(height * rng.uniform(0.08, 0.6)) for _ in inks[1:]]
    margin = int(height * rng.uniform(0.2, 0.8)) + 4
    total_w = sum(i.shape[1] for i in inks) + sum(gaps) + 2 * margin
    total_h = max(i.shape[0] for i in inks) + int(0.3 * height) + 2 * margin
    canvas = np.zeros((total_h, total_w), np.float32)
    x = margin
    for k, ink in enumerate(inks):
        h, w = ink.shape
        y = margin + int(rng.integers(0, int(0.3 * height) + 1))
        canvas[y : y + h, x : x + w] = np.maximum(canvas[y : y + h, x : x + w], ink)
        x += w + (gaps[k] if k < len(gaps) else 0)
    kind = str(rng.choice(WILD_CATEGORIES))
    rgba, rgb, ext = _compose(rng, canvas, kind, height)
    return _encode(rgba, rgb, ext, rng), ext


def generate(out: Path, split: str, n_wild: int, n_codes: int, n_clean: int, seed: int) -> dict:
    """Write the three sets under `out` plus `labels.csv` and `manifest.json`."""
    images, labels = load(split)
    rng = np.random.default_rng(seed)
    # clean: the first n_clean digits in order; wild and postcodes: random draws (with
    # replacement) from the whole split, so they do not share the clean selection's bias
    rows: list[tuple[str, str, str, str]] = []

    def write(rel: str, data: bytes, set_name: str, category: str, label: str) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append((rel, set_name, category, label))

    for i in range(min(n_clean, len(images))):
        buf = io.BytesIO()
        Image.fromarray(images[i]).save(buf, "PNG")
        write(f"clean/{i:05d}.png", buf.getvalue(), "clean", "clean", str(labels[i]))
    for kind in WILD_CATEGORIES:
        for i in range(n_wild):
            j = int(rng.integers(len(images)))
            data, ext = wild_digit(rng, images[j], kind)
            write(f"wild/{kind}_{i:05d}.{ext}", data, "wild", kind, str(labels[j]))
    for i in range(n_codes):
        idx = rng.integers(len(images), size=POSTCODE_LENGTH)
        data, ext = postcode(rng, [images[j] for j in idx])
        text = "".join(str(labels[j]) for j in idx)
        write(f"postcodes/{i:05d}.{ext}", data, "postcodes", "five_digits", text)
    with open(out / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "set", "category", "label"])
        writer.writerows(rows)
    manifest = {
        "split": split,
        "seed": seed,
        "counts": {"clean": min(n_clean, len(images)), "wild": n_wild * 8, "postcodes": n_codes},
        "wild_categories": list(WILD_CATEGORIES),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
