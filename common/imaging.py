"""Decode untrusted image bytes and normalise digits the way MNIST was made.

MNIST digits are white ink on black, 28x28, the longer side of the ink's bounding box scaled
to 20 px (aspect kept, anti-aliased) and the centre of mass placed at the centre of the field.
Mail is dark ink on light, coloured or shaded paper, any size, off-centre, often JPEG or a
transparent canvas export. Everything here is Pillow + numpy, with the per-pixel loops compiled
(`common.kernels`, numba), so the API stays light, and fast: a 28x28 PNG costs ~0.1-0.2 ms, a
640x480 JPEG a few ms (`python -m evaluation speed`; README "Speed").

Steps (`ink_map`, then components, then `crop_to_mnist`): greyscale at <= 160 px -> polarity
(the border when it is clearly paper, else a vote of 4x4 blocks) -> paper level per block,
capped at a robust plane, interpolated and subtracted (gradients, shadows) -> Otsu split of
ink and paper -> contrast stretch that keeps anti-aliased edges -> connected components,
specks and faint shadow edges dropped -> crop -> 20 px -> centre of mass at (14, 14).
28x28 images already framed like MNIST are passed through untouched.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from common import kernels
from common.contract import IMAGE_SIDE

DIGIT_BOX = 20
DEFAULT_MAX_PIXELS = 25_000_000
"""The default of `DIGITS_MAX_IMAGE_PIXELS` (written here only; `api.config` reads it): larger
images are refused (a 24 Mpx camera is 6000x4000). The full decode of an RGBA image of this size is
~100 MB, the most one request can make the process allocate. (It was already the effective
limit when the setting said 40 Mpx: Pillow's guard, left at 25 Mpx, refused anything above.)"""
DECODE_SIDE = 1280
"""`decode` returns at most this many pixels per side: segmentation works at <= 640 px and a
single digit at <= 160 px, so more only costs memory and time."""
MAX_SIDE = 20_000
WORK_SIDE = 160
"""Single digits are analysed at most this big: the result is 20 px, and downscaling averages
away sensor noise and JPEG artefacts before thresholding."""


def set_max_pixels(max_pixels: int) -> None:
    """Make `max_pixels` this process's image limit: `decode`'s default and Pillow's own
    decompression-bomb guard (`Image.MAX_IMAGE_PIXELS`, a process-wide global), so the two
    can never disagree. The API calls it once at start-up with `DIGITS_MAX_IMAGE_PIXELS`."""
    global _max_pixels
    _max_pixels = max_pixels
    Image.MAX_IMAGE_PIXELS = max_pixels


def max_pixels_limit() -> int:
    """The limit `decode` applies when it is given none."""
    return _max_pixels


_max_pixels = DEFAULT_MAX_PIXELS
# Pillow's guard, set explicitly (its default is 89 Mpx, a warning only below 2x). decode()
# checks the header size itself first, then Pillow checks it again with the same limit.
set_max_pixels(DEFAULT_MAX_PIXELS)

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class ImageError(ValueError):
    """A client-side problem with an image; `code` is stable and machine-readable.

    HTTP mapping (api/serving/inputs.py): unsupported_format -> 415, too_large -> 413, empty -> 400,
    undecodable / bad_array -> 422 (the request was well-formed, its content is not).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Normalised:
    """A 28x28 uint8 white-on-black digit, or `blank=True` when no ink was found."""

    image: np.ndarray
    blank: bool = False


def sniff_format(data: bytes) -> str | None:
    """The allow-listed format of `data` by its magic bytes (never by name or content type)."""
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """Image bytes -> 2-D uint8 greyscale in the image's own polarity (0 black, 255 white),
    at most DECODE_SIDE px per side (box-averaged down, aspect kept).

    EXIF orientation is applied, transparency is composited onto a background that contrasts
    with the ink (white for dark ink, black for light ink), GIFs use their first frame.
    `max_pixels` (default: the process's limit, `set_max_pixels`) is width x height at most;
    Pillow's guard is raised to it when below, never lowered (another thread may be decoding).
    Raises ImageError(empty | unsupported_format | too_large | undecodable); a too_large
    message always quotes `max_pixels`, whichever check refused the image.
    """
    limit = _max_pixels if max_pixels is None else max_pixels
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit
    if not data:
        raise ImageError("empty", "the image is empty")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(
            "unsupported_format", "not a PNG, JPEG, WebP, BMP, GIF or TIFF image (by content)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = im.size  # from the header: nothing decoded yet
            if width <= 0 or height <= 0:
                raise ImageError("undecodable", "the image has no pixels")
            if width * height > limit or max(width, height) > MAX_SIDE:
                raise _too_large(f"{width}x{height} ({width * height:,} pixels)", limit)
            if fmt == "JPEG":
                _jpeg_draft(im)
            im.load()
            return _to_gray(_orient(im))
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's guard (a frame larger than the header said, or a smaller limit set by
        # another caller): refused with the same message as the header check.
        raise _too_large("the image", limit) from exc
    except MemoryError as exc:
        raise _too_large("the image", limit) from exc
    except Exception as exc:
        # Pillow signals broken data with OSError, SyntaxError, ValueError, EOFError,
        # struct.error, IndexError... depending on the plugin: all mean "cannot decode".
        raise ImageError("undecodable", f"cannot decode the {fmt} image: {exc}") from exc


def _too_large(what: str, limit: int) -> ImageError:
    return ImageError(
        "too_large",
        f"{what} exceeds the limit of {limit:,} pixels (DIGITS_MAX_IMAGE_PIXELS) "
        f"or {MAX_SIDE:,} px per side",
    )


def _jpeg_draft(im: Image.Image) -> None:
    """Let libjpeg decode at 1/2..1/8 scale (DCT scaling) when the photo is much bigger than
    needed: 640 px is plenty for a five-digit code, and this is the cost that dominates."""
    w, h = im.size
    scale = max(w, h) / 640
    if scale >= 2:
        im.draft(
            im.mode if im.mode == "CMYK" else "L", (math.ceil(w / scale), math.ceil(h / scale))
        )
    elif im.mode in ("RGB", "YCbCr"):
        im.draft("L", (w, h))  # grey decode: skips the colour conversion


def _orient(im: Image.Image) -> Image.Image:
    # getexif() is cheap when there is no EXIF; only transpose when it would do something.
    orientation = im.getexif().get(0x0112, 1) if "exif" in im.info or im.format == "TIFF" else 1
    return ImageOps.exif_transpose(im) if orientation not in (1, None) else im


def _to_gray(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("PA", "La", "RGBa"):
        im = im.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode == "L" and "transparency" in im.info:
        im = im.convert("LA")
    elif mode == "RGB" and "transparency" in im.info:
        im = im.convert("RGBA")
    mode = im.mode
    if mode in ("RGBA", "LA"):
        im = _shrink(im)  # Pillow premultiplies alpha when resizing
        alpha = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
        gray = np.asarray(im.convert("L"), dtype=np.float32)
        return _composite(gray, alpha)
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im)
        step = math.ceil(max(arr.shape) / DECODE_SIDE)
        arr = arr[::step, ::step].astype(np.float64)  # rare input: subsampling is enough
        if mode != "F" or arr.max(initial=0) > 1.0:
            top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        else:
            top = 1.0
        return np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
    if mode != "L":
        im = im.convert("L")
    return np.asarray(_shrink(im))


def _shrink(im: Image.Image) -> Image.Image:
    w, h = im.size
    scale = DECODE_SIDE / max(w, h)
    if scale >= 1:
        return im
    return im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)


def _composite(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten a transparent image onto white, or onto black when the ink itself is light.

    Canvas exports store fully transparent pixels as (0, 0, 0, 0): reading only the colour
    would make the whole image black. Judging the ink by its alpha-weighted grey keeps both
    dark ink (-> white paper) and white ink for dark-mode pages (-> black paper) readable.
    """
    weight = float(alpha.sum())
    if weight == 0 or float(alpha.min()) >= 0.999:
        return gray.astype(np.uint8)
    ink_grey = float((gray * alpha).sum() / weight)
    paper = 0.0 if ink_grey > 160 else 255.0
    out = gray * alpha + paper * (1.0 - alpha)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def from_array(value: Any) -> np.ndarray:
    """A JSON 28x28 array (0-255 numbers, or 0-1 floats) -> uint8, otherwise UNCHANGED.

    Such arrays are already in the MNIST convention (the seed's API format), so they are not
    re-normalised. Raises ImageError("bad_array") for anything else.
    """
    if not isinstance(value, list) or len(value) != IMAGE_SIDE:
        raise ImageError("bad_array", "expected a 28x28 array (a list of 28 rows)")
    try:
        # NOTE: numpy validates shape and types in C (a Python loop over 784 values cost
        # ~0.4 ms per image); dtype inference rejects strings, dicts and ragged rows.
        arr = np.array(value)
    except (ValueError, TypeError, OverflowError):
        raise ImageError("bad_array", "expected a 28x28 array of numbers") from None
    if arr.shape != (IMAGE_SIDE, IMAGE_SIDE):
        raise ImageError("bad_array", "expected a 28x28 array (each row 28 numbers)")
    if arr.dtype.kind not in "iuf" or bool in set(chain.from_iterable(map(type, r) for r in value)):
        # b/U/O: booleans, strings, nested garbage; a JSON true among ints becomes 1 in
        # numpy, so booleans are looked for by type (a C-level pass, ~10 us).
        raise ImageError("bad_array", "array values must be numbers")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ImageError("bad_array", "array values must be finite (no NaN or infinity)")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 255:
        raise ImageError("bad_array", "array values must be within 0..255 (or 0..1)")
    is_unit = hi <= 1.0 and not np.all(np.equal(np.mod(arr, 1), 0))
    if is_unit:
        arr = arr * 255.0
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- ink analysis


@dataclass
class InkMap:
    """Ink strength 0..255 (white ink on black) of a greyscale image at working scale."""

    ink: np.ndarray
    """uint8, background suppressed to 0, anti-aliased edges kept grey."""
    scale: float
    """working pixels per original pixel (<= 1)."""
    blank: bool


def resize_gray(gray: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink (never enlarge) so the longer side is <= max_side; BOX averaging kills noise."""
    h, w = gray.shape
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return gray, 1.0
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = Image.fromarray(gray).resize((nw, nh), Image.Resampling.BOX)
    return np.asarray(small), nw / w


def _interpolate(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear interpolation between block centres, clamped at the edges."""
    n = grid.shape[0]
    centres_y = (np.arange(n) + 0.5) * h / n - 0.5
    centres_x = (np.arange(n) + 0.5) * w / n - 0.5
    rows = np.stack([np.interp(np.arange(w), centres_x, grid[i]) for i in range(n)])
    wy = np.interp(np.arange(h), centres_y, np.arange(n, dtype=np.float64))
    i0 = np.floor(wy).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    f = (wy - i0)[:, None]
    return (rows[i0] * (1 - f) + rows[i1] * f).astype(np.float32)


def _median(values: np.ndarray) -> float:
    """`np.median` of a 1-d array, without its general machinery (≈ 15 µs a call here)."""
    ordered = np.sort(values)
    middle = ordered.size // 2
    if ordered.size % 2:
        return float(ordered[middle])
    return (float(ordered[middle - 1]) + float(ordered[middle])) / 2


def _ink_is_dark(img: np.ndarray, q02: np.ndarray, q50: np.ndarray, q98: np.ndarray) -> bool:
    """Polarity: the image border when it is clearly paper, else a vote of the blocks.

    The border is paper in nearly every photo or scan, and is the only evidence that holds
    for a tight crop of a fat digit. Under a strong shadow the border sits mid-range; then
    each block votes for the side of its longer tail (one vote per block, so the few blocks
    swamped by a thick stroke cannot outvote the rest).
    """
    border = np.concatenate([img[0], img[-1], img[1:-1, 0], img[1:-1, -1]])
    lo, hi = float(q02.min()), float(q98.max())
    if hi - lo >= MIN_CONTRAST:
        position = (_median(border) - lo) / (hi - lo)
        if position >= 0.75:
            return True
        if position <= 0.25:
            return False
    dark_tail, bright_tail = q50 - q02, q98 - q50
    votes = np.sign(dark_tail - bright_tail) * (np.maximum(dark_tail, bright_tail) >= 12)
    total = int(votes.sum())
    return total > 0 if total else float(dark_tail.sum()) > float(bright_tail.sum())


def _polarity_and_paper(img: np.ndarray) -> tuple[bool, np.ndarray | float]:
    """(ink is dark?, paper level in the white-ink-on-black frame).

    Works on a coarse grid of blocks (4x4, or the whole image when small). Ink is a minority
    in every block, so it shows as a long tail on one side of the block's median: dark tail
    -> dark ink on light paper. This survives gradients and shadows that fool a global
    "is the border light?" test. The paper is a low percentile of each block (ink covers well
    under 75 % of any block), interpolated across the image.
    """
    h, w = img.shape
    n = BACKGROUND_GRID if min(h, w) >= 48 else 1
    q02, q25, q50, q75, q98 = kernels.block_quantiles(img, n, _PAPER_QUANTILES)
    dark_ink = _ink_is_dark(img, q02, q50, q98)
    grid = 255.0 - q75 if dark_ink else q25
    if n == 1:
        return dark_ink, float(grid[0, 0])
    return dark_ink, _interpolate(_clamp_to_plane(grid), h, w)


PLANE_TOLERANCE = 30.0
"""How far above a smooth shading a block's paper estimate may sit before it counts as ink."""


def _clamp_to_plane(grid: np.ndarray) -> np.ndarray:
    """Cap block paper levels at a robust plane fit + tolerance.

    A block mostly covered by a fat stroke reports ink as its "paper"; subtracting that would
    hollow the stroke out. Shading is smooth, so such blocks stand out above a plane fitted
    to the others (fit, drop the blocks far above it, refit).
    """
    n = grid.shape[0]
    yy, xx = np.mgrid[0:n, 0:n]
    design = np.stack([np.ones(n * n), yy.ravel(), xx.ravel()], axis=1)
    values = grid.ravel().astype(np.float64)
    keep = np.ones(n * n, bool)
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(design[keep], values[keep], rcond=None)
        residual = values - design @ coef
        keep = residual <= PLANE_TOLERANCE * 0.67
        if keep.sum() < 4:
            return grid
    plane = (design @ coef).reshape(n, n)
    return np.minimum(grid, plane + PLANE_TOLERANCE).astype(np.float32)


BACKGROUND_GRID = 4
_PAPER_QUANTILES = np.array([0.02, 0.25, 0.5, 0.75, 0.98])
MIN_CONTRAST = 40.0
"""Ink must be at least this much (0..255) above paper, and well above noise, or it's blank."""


def ink_map(gray: np.ndarray, max_side: int = WORK_SIDE) -> InkMap:
    """Greyscale in any polarity -> white ink on black with the paper removed.

    All statistics come from 256-bin histograms, counted in compiled passes (`common.kernels`).
    """
    small, scale = resize_gray(gray, max_side)
    small = np.ascontiguousarray(small, dtype=np.uint8)
    dark_ink, paper = _polarity_and_paper(small)
    img = 255 - small if dark_ink else small
    if not isinstance(paper, np.ndarray):
        paper = np.full(img.shape, paper, np.float32)
    ink, blank = kernels.stretch(img, paper, MIN_CONTRAST)
    return InkMap(ink, scale, blank)


# --------------------------------------------------------------------------- components


@dataclass
class Components:
    labels: np.ndarray
    """int32 label image, 0 = background, 1..n components."""
    boxes: np.ndarray
    """(n, 4) int: x, y, w, h of component i+1."""
    areas: np.ndarray
    """(n,) pixel counts."""


def label_components(mask: np.ndarray) -> Components:
    """8-connected components of a boolean mask, numbered in the order they start (reading
    order); one compiled pass (`common.kernels.label8`), ~3 us for a 28x28 mask."""
    labels, boxes, areas = kernels.label8(np.ascontiguousarray(mask, dtype=bool))
    return Components(labels, boxes, areas)


SPECK_FRACTION = 0.04
"""A component smaller than this fraction of the largest one is a speck of dirt or noise."""


FAINT_PEAK = 128
"""A component whose strongest pixel stays below this (of 255) is leftover paper texture or
shadow edge, not a pen stroke: real strokes reach the top of the contrast stretch."""


def significant(comps: Components, ink: np.ndarray, min_area: int = 3) -> np.ndarray:
    """Indices (0-based) of components that are neither specks nor faint paper residue."""
    if comps.areas.size == 0:
        return np.zeros(0, int)
    strong = np.zeros(comps.areas.size + 1, bool)
    strong[comps.labels[ink >= FAINT_PEAK]] = True
    strong = strong[1:]
    if not strong.any():
        return np.zeros(0, int)
    limit = max(min_area, SPECK_FRACTION * comps.areas[strong].max())
    return np.nonzero(strong & (comps.areas >= limit))[0]


# --------------------------------------------------------------------------- MNIST framing


def crop_to_mnist(ink: np.ndarray) -> np.ndarray:
    """Tight-cropped ink -> 28x28 uint8: longer side 20 px, centre of mass at (14, 14)."""
    top, bottom, left, right = kernels.ink_box(np.ascontiguousarray(ink, dtype=np.uint8))
    if bottom < 0:
        return np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    ink = np.ascontiguousarray(ink[top : bottom + 1, left : right + 1])
    h, w = ink.shape
    s = DIGIT_BOX / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = Image.fromarray(ink).resize((nw, nh), Image.Resampling.LANCZOS)
    arr = np.asarray(small, dtype=np.float32)
    peak = float(arr.max())
    if peak <= 0:
        return np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    arr *= 255.0 / peak  # MNIST strokes peak at 255; thin or faint ink would read as grey
    mass = arr.sum()
    cy = float((arr.sum(axis=1) * np.arange(nh)).sum() / mass)
    cx = float((arr.sum(axis=0) * np.arange(nw)).sum() / mass)
    oy = min(max(round(14 - cy), 0), IMAGE_SIDE - nh)
    ox = min(max(round(14 - cx), 0), IMAGE_SIDE - nw)
    out = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    out[oy : oy + nh, ox : ox + nw] = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
    return out


def _mnist_like(gray: np.ndarray) -> np.ndarray | None:
    """A 28x28 image already framed like MNIST (either polarity) -> white-on-black, else None.

    Re-normalising such images can only blur them; passing them through keeps clean MNIST
    exactly as the model was trained on it, and costs microseconds.
    """
    if gray.shape != (IMAGE_SIDE, IMAGE_SIDE):
        return None
    img = gray
    ring = int(gray.sum(dtype=np.int64)) - int(gray[1:-1, 1:-1].sum(dtype=np.int64))
    if ring > 127 * (4 * IMAGE_SIDE - 4):  # light border: dark ink on paper
        img = 255 - gray
    if np.count_nonzero(img <= 16) < 0.5 * img.size or int(img.max()) < 128:
        return None
    mask = img > 16
    ys, xs = np.nonzero(mask)
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    if not 16 <= side <= 22:
        return None
    f = img.astype(np.float32)
    mass = f.sum()
    cy = float((f.sum(axis=1) * np.arange(IMAGE_SIDE)).sum() / mass)
    cx = float((f.sum(axis=0) * np.arange(IMAGE_SIDE)).sum() / mass)
    if abs(cy - 14) > 1.5 or abs(cx - 14) > 1.5:
        return None
    return np.ascontiguousarray(img, dtype=np.uint8)


def normalise(gray: np.ndarray) -> Normalised:
    """Any greyscale digit image -> MNIST framing, or blank=True when there is no ink."""
    passthrough = _mnist_like(gray)
    if passthrough is not None:
        return Normalised(passthrough, False)
    im = ink_map(gray)
    if im.blank:
        return Normalised(np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.uint8), True)
    comps = label_components(im.ink > 0)
    keep = significant(comps, im.ink)
    if keep.size == 0:
        return Normalised(np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.uint8), True)
    chosen = np.zeros(comps.areas.size + 1, bool)
    chosen[keep + 1] = True
    ink = np.where(chosen[comps.labels], im.ink, 0).astype(np.uint8)
    return Normalised(crop_to_mnist(ink), False)


def prepare_digit(data: bytes, max_pixels: int | None = None) -> Normalised:
    """Image bytes -> normalised digit (the whole API path for one single-digit image)."""
    return normalise(decode(data, max_pixels=max_pixels))
