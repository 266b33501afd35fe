"""The compiled kernels against numpy oracles: the same numbers, bit for bit (issue 16).

The oracles are the numpy code each kernel replaced, written here as plainly as possible;
a kernel that drifted from it would change what the model sees.
"""

from __future__ import annotations

import numpy as np
import pytest

from common import kernels

LEVELS = np.arange(256, dtype=np.float64)


def quantile_oracle(hist: np.ndarray, q: float) -> float:
    cum = np.cumsum(hist)
    return 0.0 if cum[-1] <= 0 else float(np.searchsorted(cum, q * cum[-1], side="left"))


def otsu_oracle(hist: np.ndarray) -> int:
    hist = hist.astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 0
    w0, m0 = np.cumsum(hist), np.cumsum(hist * LEVELS[: hist.size])
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0[-1] * w0 / total - m0) ** 2 / (w0 * (total - w0))
    return int(np.argmax(np.where(np.isfinite(between), between, 0.0)))


def stretch_oracle(img: np.ndarray, paper: np.ndarray) -> tuple[np.ndarray, bool]:
    resid = np.clip(img.astype(np.float32) - paper, 0, 255).astype(np.uint8)
    rhist = np.bincount(resid.ravel(), minlength=256)
    t = otsu_oracle(rhist)
    paper_hist, ink = rhist[: t + 1], rhist[t + 1 :]
    blank = (np.zeros(img.shape, np.uint8), True)
    if ink.sum() == 0 or paper_hist.sum() == 0:
        return blank
    p_med = quantile_oracle(paper_hist, 0.5)
    dev = np.bincount(
        np.abs(LEVELS[: t + 1] - p_med).astype(int), weights=paper_hist, minlength=256
    )
    noise = 1.4826 * quantile_oracle(dev, 0.5) + 1.0
    ink_level = t + 1 + quantile_oracle(ink, 0.9)
    if ink_level - p_med < max(40.0, 6 * noise):
        return blank
    floor = max(p_med + 3 * noise, p_med + 0.25 * (t - p_med))
    top = max(ink_level, floor + 1)
    lut = np.clip((LEVELS - floor) * (255.0 / (top - floor)), 0, 255).astype(np.uint8)
    return lut[resid], False


def digit_like(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Paper with noise and a bright stroke: images that take every branch of `stretch`."""
    img = rng.normal(rng.uniform(0, 80), rng.uniform(0, 15), shape)
    h, w = shape
    y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
    img[y : y + max(1, h // 3), x : x + max(1, w // 4)] += rng.uniform(0, 220)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_block_quantiles_are_each_block_s_own():
    rng = np.random.default_rng(3)
    qs = np.array([0.02, 0.25, 0.5, 0.75, 0.98])
    for shape, n in (((1, 1), 1), ((28, 28), 1), ((60, 90), 4), ((160, 120), 4), ((7, 5), 4)):
        img = rng.integers(0, 256, shape).astype(np.uint8)
        img[: shape[0] // 3] = 0  # a flat run of levels, where a quantile sits on a step
        got = kernels.block_quantiles(img, n, qs)
        rows = np.minimum(np.arange(shape[0]) * n // shape[0], n - 1)
        cols = np.minimum(np.arange(shape[1]) * n // shape[1], n - 1)
        for by in range(n):
            for bx in range(n):
                block = img[rows == by][:, cols == bx]
                hist = np.bincount(block.ravel(), minlength=256)
                expected = [quantile_oracle(hist, q) if hist.sum() else 0.0 for q in qs]
                assert got[:, by, bx].tolist() == expected, (shape, n, by, bx)


def test_otsu_agrees_with_the_numpy_formula():
    rng = np.random.default_rng(5)
    hists = [np.zeros(256, np.int64), np.eye(1, 256, 7, dtype=np.int64)[0]]
    hists += [rng.integers(0, 50, 256) * (rng.random(256) < rng.random()) for _ in range(200)]
    for hist in hists:
        assert kernels.otsu(hist) == otsu_oracle(hist)


def test_stretch_agrees_with_the_numpy_it_replaced():
    rng = np.random.default_rng(7)
    blanks = 0
    for _ in range(300):
        shape = (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
        img = digit_like(rng, shape)
        paper = np.full(shape, np.float32(rng.uniform(0, 60)), np.float32)
        if rng.random() < 0.5:  # a shading plane, as the 4x4 grid's interpolation gives
            paper = paper + np.linspace(0, rng.uniform(0, 40), shape[1], dtype=np.float32)
        ink, blank = kernels.stretch(img, paper, 40.0)
        expected, expected_blank = stretch_oracle(img, paper)
        assert blank == expected_blank
        np.testing.assert_array_equal(ink, expected)
        blanks += blank
    assert 0 < blanks < 300, "both outcomes were exercised"


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (28, 28), (75, 201)])
def test_labels_are_numbered_in_reading_order(shape):
    rng = np.random.default_rng(11)
    for density in (0.05, 0.3, 0.6, 1.0):
        mask = rng.random(shape) < density
        labels, _, areas = kernels.label8(mask)
        seen = [int(v) for v in labels.ravel() if v]
        first_seen = list(dict.fromkeys(seen))
        assert first_seen == list(range(1, len(areas) + 1))
        assert areas.tolist() == [seen.count(k) for k in first_seen]


def test_labels_survive_the_most_components_a_mask_can_have():
    """Isolated pixels on every other row and column: the most new labels per row that the
    kernel's union-find table is sized for (no bounds checks in compiled code)."""
    for h, w in ((1, 1), (3, 7), (41, 41), (160, 161)):
        mask = np.zeros((h, w), bool)
        mask[::2, ::2] = True
        _, boxes, areas = kernels.label8(mask)
        assert areas.size == mask.sum() and (areas == 1).all()
        assert (boxes[:, 2:] == 1).all()


def test_ink_box_is_the_bounding_box_of_the_nonzero_pixels():
    rng = np.random.default_rng(13)
    assert kernels.ink_box(np.zeros((5, 4), np.uint8))[1] == -1
    for _ in range(50):
        ink = (rng.random((int(rng.integers(1, 40)), int(rng.integers(1, 40)))) < 0.05).astype(
            np.uint8
        )
        if not ink.any():
            continue
        ys, xs = np.nonzero(ink)
        assert kernels.ink_box(ink) == (ys.min(), ys.max(), xs.min(), xs.max())


def test_after_warm_up_no_input_compiles_a_kernel():
    """A compilation takes seconds: one in a request would break the 2 s contract. Every way
    an image reaches the kernels (a decoded PNG is read-only, a JSON array is not, a large
    photo takes the 4 x 4 grid, a postcode the segmentation) must find a warmed version."""
    import io

    from PIL import Image

    from common.imaging import decode, from_array, normalise
    from common.segmentation import segment

    kernels.warm_up()
    dispatchers = (kernels.block_quantiles, kernels.stretch, kernels.label8, kernels.ink_box)
    before = [len(d.signatures) for d in dispatchers]
    rng = np.random.default_rng(17)
    for shape in ((28, 28), (120, 90), (480, 640)):
        image = Image.fromarray(digit_like(rng, shape))
        png = io.BytesIO()
        image.save(png, format="PNG")
        normalise(decode(png.getvalue()))
    normalise(from_array(digit_like(rng, (28, 28)).tolist()))  # JSON arrays are 28 x 28
    code = np.full((60, 200), 230, np.uint8)
    for x in (20, 70, 120):
        code[15:45, x : x + 8] = 20
    segment(code)
    assert [len(d.signatures) for d in dispatchers] == before
