"""Segmentation of composed codes: counts, left-to-right order, merging and splitting."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image, ImageDraw

from common.imaging import decode, label_components
from common.segmentation import segment
from evaluation.generate import postcode

HEIGHT = 80


def glyph(draw: ImageDraw.ImageDraw, kind: str, x: int, y: int, h: int = HEIGHT) -> int:
    """Draw a simple digit-like shape at (x, y); return its width."""
    w = int(h * 0.6)
    s = max(3, h // 10)
    if kind == "0":
        draw.ellipse((x, y, x + w, y + h), outline=0, width=s)
    elif kind == "1":
        w = s * 2
        draw.line((x + s, y, x + s, y + h), fill=0, width=s)
    elif kind == "7":
        draw.line((x, y + s // 2, x + w, y + s // 2, x + w // 3, y + h), fill=0, width=s)
    elif kind == "broken5":  # the top bar is a separate stroke, as a lifted pen leaves it
        draw.line((x + s, y + s // 2, x + w, y + s // 2), fill=0, width=s)
        draw.line((x + s, y + 3 * s, x + s, y + h // 2), fill=0, width=s)
        draw.arc((x, y + h // 2 - s, x + w, y + h), 270, 160, fill=0, width=s)
    return w


def compose(kinds: list[str], gaps: list[int], jitter: list[int] | None = None) -> np.ndarray:
    width = 40 + sum(int(HEIGHT * 0.6) for _ in kinds) + sum(gaps) + 40
    im = Image.new("L", (width, HEIGHT + 80), 235)
    draw = ImageDraw.Draw(im)
    x = 30
    for i, kind in enumerate(kinds):
        y = 40 + (jitter[i] if jitter else 0)
        x += glyph(draw, kind, x, y) + (gaps[i] if i < len(gaps) else 0)
    return np.asarray(im)


def test_five_digits_in_order_with_uneven_gaps_and_jitter() -> None:
    img = compose(["1", "0", "7", "0", "1"], gaps=[10, 45, 18, 60], jitter=[0, 8, -6, 4, 10])
    seg = segment(img, expected=5)
    assert len(seg.boxes) == 5 and len(seg.crops) == 5
    xs = [b[0] for b in seg.boxes]
    assert xs == sorted(xs)
    # narrow ones are the 1s: first and last
    widths = [b[2] for b in seg.boxes]
    assert widths[0] < widths[1] / 2 and widths[4] < widths[3] / 2
    assert not seg.doubtful
    for crop in seg.crops:
        assert crop.image.shape == (28, 28) and crop.image.max() > 200 and not crop.blank


def test_broken_digit_is_merged_into_one() -> None:
    img = compose(["1", "broken5", "0"], gaps=[30, 30])
    mask = img < 128
    assert len(label_components(mask).areas) >= 4, "the 5 really is in pieces"
    seg = segment(img)
    assert len(seg.boxes) == 3
    five = seg.boxes[1]
    assert five[3] > 0.8 * HEIGHT, "the bar and the body are one digit"


def test_touching_digits_are_split_and_flagged() -> None:
    img = compose(["0", "0", "1", "7"], gaps=[-6, 30, 30])  # the two zeros overlap
    seg = segment(img, expected=4)
    assert len(seg.boxes) == 4
    assert seg.doubtful and "split_touching_digits" in seg.reasons
    xs = [b[0] for b in seg.boxes]
    assert xs == sorted(xs)


def test_dust_is_not_a_digit() -> None:
    img = compose(["7", "0", "1"], gaps=[30, 30]).copy()
    img[5:7, 5:7] = 0
    img[-4:-2, -9:-7] = 0
    assert len(segment(img).boxes) == 3


def test_boxes_are_in_original_pixels_after_downscaling() -> None:
    small = compose(["1", "0", "7"], gaps=[40, 40])
    big = np.asarray(Image.fromarray(small).resize((small.shape[1] * 4, small.shape[0] * 4)))
    seg_small, seg_big = segment(small), segment(big)
    assert len(seg_big.boxes) == 3
    for a, b in zip(seg_small.boxes, seg_big.boxes, strict=True):
        assert np.allclose(np.array(b), 4 * np.array(a), atol=12)


def test_blank_image_has_no_digits() -> None:
    seg = segment(np.full((100, 400), 240, np.uint8))
    assert seg.boxes == [] and seg.crops == []
    assert seg.reasons == ["no_digit_found"]


def test_generated_postcode_segments_into_five() -> None:
    # synthetic MNIST-like 28x28 digits: one vertical bar, one ring
    bar = np.zeros((28, 28), np.uint8)
    bar[4:24, 12:16] = 255
    ring = np.asarray(Image.new("L", (28, 28)))
    ring = Image.fromarray(ring.copy())
    ImageDraw.Draw(ring).ellipse((7, 4, 21, 24), outline=255, width=3)
    ring_arr = np.asarray(ring)
    rng = np.random.default_rng(4)
    for _ in range(5):
        digits = [bar, ring_arr, bar, ring_arr, ring_arr]
        data, _ = postcode(rng, digits)
        seg = segment(decode(data), expected=5)
        assert len(seg.boxes) == 5
        widths = [b[2] for b in seg.boxes]
        assert widths[0] < widths[1] and widths[2] < widths[3], "bars and rings in order"


def test_segment_speed_is_reasonable() -> None:
    # not a benchmark: catches an accidental pure-Python per-pixel loop (that costs seconds)
    img = compose(["1", "0", "7", "0", "1"], gaps=[20, 20, 20, 20])
    big = np.asarray(Image.fromarray(img).resize((img.shape[1] * 3, img.shape[0] * 3)))
    started = time.perf_counter()
    for _ in range(5):
        segment(big)
    assert (time.perf_counter() - started) / 5 < 0.25
