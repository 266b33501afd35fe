"""Each normalisation step on constructed images (no MNIST download needed)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from common import imaging
from common.imaging import (
    ImageError,
    Normalised,
    decode,
    from_array,
    label_components,
    normalise,
    prepare_digit,
)


def draw_digit(
    size: tuple[int, int] = (200, 160),
    box: tuple[int, int, int, int] = (60, 30, 120, 130),
    ink: int | tuple[int, ...] = 0,
    paper: int | tuple[int, ...] = 255,
    mode: str = "L",
    width: int = 9,
) -> Image.Image:
    """A '4'-like glyph: asymmetric, so flips and rotations are visible."""
    if mode == "RGB":  # an int fill on RGB means red, not grey
        ink = (ink,) * 3 if isinstance(ink, int) else ink
        paper = (paper,) * 3 if isinstance(paper, int) else paper
    im = Image.new(mode, size, paper)
    d = ImageDraw.Draw(im)
    x0, y0, x1, y1 = box
    xm = x0 + (x1 - x0) * 2 // 3
    d.line([(x0, y0), (x0, (y0 + y1) // 2), (x1, (y0 + y1) // 2)], fill=ink, width=width)
    d.line([(xm, y0), (xm, y1)], fill=ink, width=width)
    return im


def encode(im: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def assert_mnist_framed(n: Normalised) -> None:
    img = n.image
    assert not n.blank
    assert img.shape == (28, 28) and img.dtype == np.uint8
    assert img.max() >= 250
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    assert border.max() == 0, "white ink on black, with a margin"
    ys, xs = np.nonzero(img > 30)
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    assert 18 <= side <= 21, side
    f = img.astype(float)
    cy = (f.sum(1) * np.arange(28)).sum() / f.sum()
    cx = (f.sum(0) * np.arange(28)).sum() / f.sum()
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1, (cy, cx)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(float).ravel(), b.astype(float).ravel()
    return float(np.corrcoef(a, b)[0, 1])


REFERENCE = prepare_digit(encode(draw_digit()))


def test_dark_ink_on_white_is_framed_like_mnist() -> None:
    assert_mnist_framed(REFERENCE)


def test_inverted_image_gives_the_same_digit() -> None:
    n = prepare_digit(encode(draw_digit(ink=255, paper=0)))
    assert_mnist_framed(n)
    assert similarity(n.image, REFERENCE.image) > 0.95


def test_off_centre_in_a_large_canvas_is_centred() -> None:
    im = draw_digit(size=(900, 700), box=(20, 540, 92, 660), width=11)
    n = prepare_digit(encode(im))
    assert_mnist_framed(n)
    assert similarity(n.image, REFERENCE.image) > 0.85


def test_coloured_paper_and_ink_jpeg() -> None:
    im = draw_digit(mode="RGB", ink=(30, 40, 140), paper=(235, 200, 150))
    n = prepare_digit(encode(im, "JPEG", quality=60))
    assert_mnist_framed(n)
    assert similarity(n.image, REFERENCE.image) > 0.9


def test_shadow_gradient_and_noise_are_suppressed() -> None:
    rng = np.random.default_rng(0)
    ink = np.asarray(draw_digit(ink=255, paper=0), np.float32) / 255
    shade = np.linspace(250, 120, ink.shape[1])[None, :] * np.ones((ink.shape[0], 1))
    img = shade * (1 - ink) + 20 * ink + rng.normal(0, 8, ink.shape)
    n = prepare_digit(encode(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))))
    assert_mnist_framed(n)
    assert similarity(n.image, REFERENCE.image) > 0.9


def test_transparent_canvas_export_dark_ink() -> None:
    # canvas exports: transparent pixels are (0,0,0,0); reading RGB alone gives all black
    alpha = draw_digit(ink=255, paper=0)
    rgba = Image.merge("RGBA", (Image.new("L", alpha.size, 0),) * 3 + (alpha,))
    gray = decode(encode(rgba))
    assert gray[0, 0] == 255, "composited on white"
    n = normalise(gray)
    assert_mnist_framed(n)
    assert similarity(n.image, REFERENCE.image) > 0.95


def test_transparent_export_with_white_ink_is_not_lost() -> None:
    alpha = draw_digit(ink=255, paper=0)
    rgba = Image.merge("RGBA", (Image.new("L", alpha.size, 255),) * 3 + (alpha,))
    n = prepare_digit(encode(rgba))
    assert_mnist_framed(n)
    assert similarity(n.image, REFERENCE.image) > 0.95


@pytest.mark.parametrize("level", [0, 128, 255])
def test_uniform_image_is_blank(level: int) -> None:
    n = prepare_digit(encode(Image.new("L", (120, 90), level)))
    assert n.blank
    assert n.image.shape == (28, 28) and n.image.max() == 0


def test_paper_with_only_noise_is_blank() -> None:
    rng = np.random.default_rng(1)
    img = np.clip(rng.normal(200, 6, (150, 150)), 0, 255).astype(np.uint8)
    assert prepare_digit(encode(Image.fromarray(img), "JPEG", quality=70)).blank


def test_tiny_dust_is_ignored() -> None:
    im = draw_digit()
    d = ImageDraw.Draw(im)
    d.point([(5, 5), (190, 150), (10, 140)], fill=0)
    assert similarity(prepare_digit(encode(im)).image, REFERENCE.image) > 0.98


def test_mnist_like_input_passes_through_unchanged() -> None:
    img = np.zeros((28, 28), np.uint8)
    img[4:24, 11:17] = 255
    img[4:24, 10] = 90  # grey anti-aliased edge
    img[4:24, 17] = 90
    n = prepare_digit(encode(Image.fromarray(img)))
    assert not n.blank
    assert np.array_equal(n.image, img)
    inverted = prepare_digit(encode(Image.fromarray(255 - img)))
    assert np.array_equal(inverted.image, img)


def test_off_centre_28x28_is_renormalised() -> None:
    img = np.zeros((28, 28), np.uint8)
    img[1:9, 1:4] = 255
    n = prepare_digit(encode(Image.fromarray(img)))
    assert not np.array_equal(n.image, img)
    assert_mnist_framed(n)


def test_exif_orientation_is_applied() -> None:
    im = Image.new("L", (200, 100), 255)
    ImageDraw.Draw(im).rectangle((0, 0, 199, 15), fill=0)  # a bar along the top
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    gray = decode(encode(im, "JPEG", exif=exif.tobytes(), quality=95))
    assert gray.shape == (200, 100)
    assert gray[:, -10:].mean() < 60, "the top bar now runs down the right side"
    assert gray[:, :50].mean() > 200


def test_cmyk_jpeg() -> None:
    im = draw_digit(mode="RGB").convert("CMYK")
    gray = decode(encode(im, "JPEG", quality=90))
    assert gray.ndim == 2 and gray[0, 0] > 200 and gray.min() < 60
    assert similarity(normalise(gray).image, REFERENCE.image) > 0.95


def test_16_bit_png() -> None:
    arr = (np.asarray(draw_digit(), np.uint16) * 257).astype(np.uint16)
    im = Image.fromarray(arr)  # uint16 -> mode I;16
    gray = decode(encode(im))
    assert gray.dtype == np.uint8 and gray.max() == 255 and gray.min() == 0
    assert similarity(normalise(gray).image, REFERENCE.image) > 0.98


def test_palette_gif_and_first_frame_of_animation() -> None:
    first = draw_digit().convert("P")
    second = Image.new("L", first.size, 0).convert("P")  # all black frame
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100)
    gray = decode(data)
    assert gray[0, 0] > 200, "first frame: white paper"
    assert similarity(normalise(gray).image, REFERENCE.image) > 0.98


def test_palette_png_with_transparency() -> None:
    im = draw_digit().convert("P")
    im.info["transparency"] = im.getpixel((0, 0))
    gray = decode(encode(im, transparency=im.getpixel((0, 0))))
    assert similarity(normalise(gray).image, REFERENCE.image) > 0.98


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF"])
def test_other_allowed_formats(fmt: str) -> None:
    # lossy WebP rings around sharp synthetic strokes, hence the looser bound
    assert similarity(prepare_digit(encode(draw_digit(), fmt)).image, REFERENCE.image) > 0.85


def test_from_array_ints_pass_unchanged() -> None:
    rng = np.random.default_rng(2)
    arr = rng.integers(0, 256, (28, 28))
    out = from_array(arr.tolist())
    assert out.dtype == np.uint8 and np.array_equal(out, arr)


def test_from_array_unit_floats_are_scaled() -> None:
    arr = np.zeros((28, 28))
    arr[10, 10], arr[11, 11] = 1.0, 0.5
    out = from_array(arr.tolist())
    assert out[10, 10] == 255 and out[11, 11] == 128 and out.sum() == 255 + 128


def test_from_array_float_values_in_0_255() -> None:
    arr = np.full((28, 28), 12.4)
    assert (from_array(arr.tolist()) == 12).all()


@pytest.mark.parametrize(
    "value",
    [
        [[0] * 28] * 27,
        [[0] * 27] * 28,
        [[0] * 28] * 27 + [[float("nan")] * 28],
        [[0] * 28] * 27 + [[float("inf")] * 28],
        [[0] * 28] * 27 + [[256] * 28],
        [[0] * 28] * 27 + [[-1] * 28],
        [[0] * 28] * 27 + [["a"] * 28],
        [[0] * 28] * 27 + [[None] * 28],
        [[0] * 28] * 27 + [[True] * 28],
        [[[0]] * 28] * 28,
        [[0] * 28] * 27 + [{"a": 1}],
        "not an array",
        None,
        {"image": []},
        [],
    ],
)
def test_from_array_rejects_garbage(value: object) -> None:
    with pytest.raises(ImageError) as err:
        from_array(value)
    assert err.value.code == "bad_array"


def test_connected_components_against_flood_fill() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        mask = rng.random((rng.integers(1, 25), rng.integers(1, 25))) < rng.random()
        comps = label_components(mask)
        # every component is 8-connected internally and no two components touch
        lab = comps.labels
        assert ((lab > 0) == mask).all()
        assert comps.areas.sum() == mask.sum()
        padded = np.pad(lab, 1)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                nb = padded[1 + dy : 1 + dy + lab.shape[0], 1 + dx : 1 + dx + lab.shape[1]]
                touching = (lab > 0) & (nb > 0)
                assert (lab[touching] == nb[touching]).all()
        assert len(comps.areas) == flood_fill_count(mask)  # so each label is one component
        for i, (x, y, w, h) in enumerate(comps.boxes):
            ys, xs = np.nonzero(lab == i + 1)
            assert (x, y, w, h) == (xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1)
            assert comps.areas[i] == ys.size


def flood_fill_count(mask: np.ndarray) -> int:
    seen = np.zeros_like(mask)
    count = 0
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        count += 1
        stack = [(y0, x0)]
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            for v in range(max(0, y - 1), min(h, y + 2)):
                for u in range(max(0, x - 1), min(w, x + 2)):
                    if mask[v, u] and not seen[v, u]:
                        seen[v, u] = True
                        stack.append((v, u))
    return count


def test_thick_large_digit_keeps_its_polarity() -> None:
    # a fat marker '0' that swamps some background blocks must not flip the polarity
    im = Image.new("L", (220, 220), 250)
    ImageDraw.Draw(im).ellipse((10, 10, 150, 170), outline=10, width=38)
    n = prepare_digit(encode(im))
    assert_mnist_framed(n)
    assert n.image[14, 14] < 60, "the hole of the 0 stays dark"
    assert n.image[14, 4:9].mean() > 150, "the ring itself is ink"


def test_fat_stroke_on_shaded_paper_is_not_hollowed() -> None:
    # blocks almost covered by ink must not be taken for paper (that would subtract the ink)
    im = Image.new("L", (240, 240), 235)
    ImageDraw.Draw(im).rectangle((70, 20, 175, 225), fill=30)
    shaded = np.asarray(im).astype(float) - np.linspace(0, 60, 240)[None, :]
    n = normalise(np.clip(shaded, 0, 255).astype(np.uint8))
    inside = n.image[8:20, 10:17]
    assert inside.min() > 150, "the middle of the stroke is ink"


def test_the_border_median_agrees_with_numpy_s_own():
    """`_median` replaced np.median (for speed, issue 16); on any input it gives the same."""
    rng = np.random.default_rng(3)
    for size in (1, 2, 27, 28, 106):
        values = rng.integers(0, 256, size).astype(np.uint8)
        assert imaging._median(values) == float(np.median(values))
