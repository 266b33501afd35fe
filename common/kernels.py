"""The normalisation's per-pixel loops, compiled (numba): histograms, the ink stretch, labels.

Written with numpy these were dozens of calls on arrays of a few hundred pixels, and the call
overhead, not the arithmetic, was most of the API's CPU per request (DESIGN "Closing the gap
with Triton"). Each kernel is one pass over the pixels and does the same arithmetic in the
same order as the numpy it replaced, so the outputs are the same bit for bit
(`tests/unit/test_kernels.py` holds them to numpy oracles).

Compiled code is cached on disk (next to this file, or under `NUMBA_CACHE_DIR`: the images
set it and fill it at build time), and `warm_up` compiles it (≈ 4–6 s) or loads it
(≈ 0.3–0.7 s) at process start, so no request pays for a compilation.
"""

from __future__ import annotations

import numba
import numpy as np

_OPTIONS = {"nogil": True, "error_model": "numpy"}  # numpy's float rules: x/0 is inf, not an error


def _jit(function):  # type: ignore[no-untyped-def]
    try:
        return numba.njit(cache=True, **_OPTIONS)(function)
    except RuntimeError:  # no writable cache directory (a read-only image without /tmp)
        return numba.njit(**_OPTIONS)(function)  # compiled in memory by warm_up at each start


@_jit
def block_quantiles(img: np.ndarray, n: int, qs: np.ndarray) -> np.ndarray:
    """(len(qs), n, n) float32 quantiles (`_quantile`) of an n x n grid of blocks of a uint8
    image."""
    h, w = img.shape
    hist = np.zeros((n * n, 256), np.int64)
    for y in range(h):
        by = min(y * n // h, n - 1)
        for x in range(w):
            bx = min(x * n // w, n - 1)
            hist[by * n + bx, img[y, x]] += 1
    out = np.zeros((qs.size, n, n), np.float32)
    for b in range(n * n):
        for k in range(qs.size):
            out[k, b // n, b % n] = _quantile(hist[b], qs[k])
    return out


@_jit
def _quantile(hist: np.ndarray, q: float) -> float:
    """The q-quantile (0..1) of values given by their histogram (first level reaching it)."""
    total = 0.0
    for count in hist:
        total += count
    if total <= 0:
        return 0.0
    wanted = q * total
    running = 0.0
    for level in range(hist.size):
        running += hist[level]
        if running >= wanted:
            return float(level)
    return float(hist.size)


@_jit
def otsu(hist: np.ndarray) -> int:
    """Otsu's threshold from a 256-bin histogram (maximises between-class variance)."""
    size = hist.size
    total = 0.0
    for count in hist:
        total += count
    if total == 0:
        return 0
    w0 = np.empty(size)
    m0 = np.empty(size)
    running_w = 0.0
    running_m = 0.0
    for level in range(size):
        running_w += hist[level]
        running_m += hist[level] * float(level)
        w0[level] = running_w
        m0[level] = running_m
    best, best_level = 0.0, 0
    for level in range(size):
        spread = m0[size - 1] * w0[level] / total - m0[level]
        between = spread * spread / (w0[level] * (total - w0[level]))
        # 0/0 and x/0 at the ends: no threshold there (every finite value is >= 0)
        if np.isfinite(between) and between > best:
            best, best_level = between, level
    return best_level


@_jit
def stretch(img: np.ndarray, paper: np.ndarray, min_contrast: float) -> tuple[np.ndarray, bool]:
    """White ink on black minus its paper level -> (ink 0..255 uint8, blank?).

    Otsu splits ink from paper; the paper's median and spread (MAD) set the floor, the ink's
    90th percentile the top, and a linear stretch between them keeps anti-aliased edges grey.
    Blank when either side is empty or the ink is not `min_contrast` and 6 noise above paper.
    """
    h, w = img.shape
    resid = np.empty((h, w), np.uint8)
    rhist = np.zeros(256, np.int64)
    for y in range(h):
        for x in range(w):
            v = np.float32(img[y, x]) - paper[y, x]
            v = min(max(v, np.float32(0)), np.float32(255))
            resid[y, x] = np.uint8(v)
            rhist[resid[y, x]] += 1
    blank = np.zeros((h, w), np.uint8)
    t = otsu(rhist)
    paper_hist, ink_hist = rhist[: t + 1], rhist[t + 1 :]
    if ink_hist.sum() == 0 or paper_hist.sum() == 0:
        return blank, True
    p_med = _quantile(paper_hist, 0.5)
    dev = np.zeros(256)
    for level in range(t + 1):
        dev[int(abs(float(level) - p_med))] += paper_hist[level]
    noise = 1.4826 * _quantile(dev, 0.5) + 1.0
    ink_level = t + 1 + _quantile(ink_hist, 0.9)
    if ink_level - p_med < max(min_contrast, 6 * noise):
        return blank, True
    floor = max(p_med + 3 * noise, p_med + 0.25 * (t - p_med))
    top = max(ink_level, floor + 1)
    gain = 255.0 / (top - floor)
    lut = np.empty(256, np.uint8)
    for level in range(256):
        lut[level] = np.uint8(min(max((float(level) - floor) * gain, 0.0), 255.0))
    out = np.empty((h, w), np.uint8)
    for y in range(h):
        for x in range(w):
            out[y, x] = lut[resid[y, x]]
    return out, False


@_jit
def label8(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8-connected components of a boolean mask: (int32 labels, (k, 4) x y w h boxes, areas).

    One raster pass with union-find (a set's root is its smallest provisional label), then a
    pass that numbers the sets in the order their first pixel appears: component 1 is the one
    that starts first in reading order, as `scipy.ndimage.label` numbers them.
    """
    h, w = mask.shape
    labels = np.zeros((h, w), np.int32)
    # A new label needs an empty pixel to its left: at most (w + 1) // 2 of them per row.
    parent = np.zeros(h * ((w + 1) // 2) + 2, np.int32)
    fresh = 1
    for y in range(h):
        for x in range(w):
            if not mask[y, x]:
                continue
            root = 0
            for dy, dx in ((0, -1), (-1, -1), (-1, 0), (-1, 1)):
                yy, xx = y + dy, x + dx
                if yy < 0 or xx < 0 or xx >= w or labels[yy, xx] == 0:
                    continue
                other = labels[yy, xx]
                while parent[other] != other:
                    other = parent[other]
                if root == 0:
                    root = other
                elif other < root:
                    parent[root] = other
                    root = other
                elif other > root:
                    parent[other] = root
            if root == 0:
                parent[fresh] = fresh
                root = fresh
                fresh += 1
            labels[y, x] = root
    final = np.zeros(fresh, np.int32)
    k = 0
    for provisional in range(1, fresh):
        root = provisional
        while parent[root] != root:
            root = parent[root]
        if root == provisional:
            k += 1
            final[provisional] = k
        else:
            final[provisional] = final[root]
    boxes = np.empty((k, 4), np.int64)
    for c in range(k):
        boxes[c, 0], boxes[c, 1], boxes[c, 2], boxes[c, 3] = w, h, -1, -1
    areas = np.zeros(k, np.int64)
    for y in range(h):
        for x in range(w):
            if labels[y, x] == 0:
                continue
            c = final[labels[y, x]]
            labels[y, x] = c
            c -= 1
            areas[c] += 1
            boxes[c, 0] = min(boxes[c, 0], x)
            boxes[c, 1] = min(boxes[c, 1], y)
            boxes[c, 2] = max(boxes[c, 2], x)
            boxes[c, 3] = max(boxes[c, 3], y)
    for c in range(k):
        boxes[c, 2] -= boxes[c, 0] - 1
        boxes[c, 3] -= boxes[c, 1] - 1
    return labels, boxes, areas


@_jit
def ink_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), inclusive, of the nonzero pixels; bottom -1 when none."""
    h, w = ink.shape
    top, bottom, left, right = h, -1, w, -1
    for y in range(h):
        for x in range(w):
            if ink[y, x]:
                top, bottom = min(top, y), y
                left, right = min(left, x), max(right, x)
    return top, bottom, left, right


def warm_up() -> None:
    """Compile (or load from the cache) every kernel now, not on the first request.

    numba compiles one version per argument type, and a read-only array (what `np.asarray`
    of a Pillow image gives) is a type of its own: both are made here. The callers pass
    C-contiguous arrays (`np.ascontiguousarray`), so no other layout reaches a kernel.
    """
    writable = np.zeros((4, 4), np.uint8)
    writable[1:3, 1:3] = 200
    read_only = writable.copy()
    read_only.flags.writeable = False
    for img in (writable, read_only):
        block_quantiles(img, 1, np.array([0.5]))
        stretch(img, np.zeros((4, 4), np.float32), 40.0)
        ink_box(img)
        mask = img > 0
        label8(mask)
        mask.flags.writeable = False
        label8(mask)
