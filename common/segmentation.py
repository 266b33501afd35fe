"""Cut a postal-code image into digit crops, left to right, each framed like MNIST.

Connected components of the ink (see `common.imaging.ink_map`), specks dropped, pieces of one
digit that overlap horizontally merged (a broken 5, an open 4), components much wider than a
digit split at the column-projection minimum. Anything guessed makes the result `doubtful`,
which sends the postcode to human review rather than silently misreading it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from common.imaging import (
    Normalised,
    crop_to_mnist,
    ink_map,
    label_components,
    significant,
)

SEG_SIDE = 640
"""Postcode images are analysed at most this big: digits of a 5-digit line stay >= ~40 px."""
MERGE_OVERLAP = 0.5
"""Two pieces belong to one digit when their x-ranges overlap by this much of the narrower."""
WIDE_RATIO = 1.25
"""A piece wider than this times the typical digit height is taken as touching digits."""
DIGIT_ASPECT = 0.7
"""Typical MNIST digit width / height, used to guess how many digits a wide piece holds."""


@dataclass
class Segmentation:
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    """(x, y, w, h) in the original image's pixels, left to right."""
    crops: list[Normalised] = field(default_factory=list)
    doubtful: bool = False
    reasons: list[str] = field(default_factory=list)


@dataclass
class _Group:
    ids: list[int]
    x0: int
    x1: int
    y0: int
    y1: int

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def h(self) -> int:
        return self.y1 - self.y0


def _overlap(a: _Group, b: _Group) -> int:
    return min(a.x1, b.x1) - max(a.x0, b.x0)


def _merge_overlapping(groups: list[_Group]) -> list[_Group]:
    groups = sorted(groups, key=lambda g: g.x0)
    merged = True
    while merged:
        merged = False
        for i in range(len(groups) - 1):
            a, b = groups[i], groups[i + 1]
            if _overlap(a, b) >= MERGE_OVERLAP * min(a.w, b.w):
                groups[i] = _Group(
                    a.ids + b.ids,
                    min(a.x0, b.x0),
                    max(a.x1, b.x1),
                    min(a.y0, b.y0),
                    max(a.y1, b.y1),
                )
                del groups[i + 1]
                merged = True
                break
    return groups


def _split(group: _Group, ink: np.ndarray, labels: np.ndarray, parts: int) -> list[_Group]:
    """Cut a wide group into `parts` at the lightest columns near the equal-width cuts."""
    region = np.isin(labels[group.y0 : group.y1, group.x0 : group.x1], group.ids)
    profile = (ink[group.y0 : group.y1, group.x0 : group.x1] * region).sum(axis=0)
    cuts = [0]
    step = group.w / parts
    for k in range(1, parts):
        lo, hi = int(step * (k - 0.35)), int(step * (k + 0.35)) + 1
        cuts.append(lo + int(np.argmin(profile[lo:hi])))
    cuts.append(group.w)
    out = []
    for a, b in itertools.pairwise(cuts):
        cols = region[:, a:b]
        rows = np.nonzero(cols.any(axis=1))[0]
        if rows.size == 0 or b <= a:
            continue
        out.append(
            _Group(
                group.ids,
                group.x0 + a,
                group.x0 + b,
                group.y0 + int(rows[0]),
                group.y0 + int(rows[-1]) + 1,
            )
        )
    return out


def segment(gray: np.ndarray, expected: int | None = None) -> Segmentation:
    """Greyscale image of a line of digits -> boxes and MNIST-framed crops, left to right.

    `expected` (the number of digits the caller expects) only guides splitting of touching
    digits; a count that still differs is left for `common.postcode.assemble` to flag.
    """
    im = ink_map(gray, max_side=SEG_SIDE)
    if im.blank:
        return Segmentation(doubtful=True, reasons=["no_digit_found"])
    comps = label_components(im.ink > 0)
    keep = significant(comps, im.ink)
    if keep.size == 0:
        return Segmentation(doubtful=True, reasons=["no_digit_found"])
    groups = [
        _Group([int(i) + 1], int(x), int(x + w), int(y), int(y + h))
        for i, (x, y, w, h) in zip(keep, comps.boxes[keep], strict=True)
    ]
    groups = _merge_overlapping(groups)
    reasons: list[str] = []
    heights = np.array([g.h for g in groups])
    typical_h = float(np.median(heights[heights >= 0.5 * heights.max()]))
    # drop short pieces that are not part of any digit (dust, underline fragments)
    small = [g for g in groups if g.h < 0.35 * typical_h]
    if small:
        groups = [g for g in groups if g.h >= 0.35 * typical_h]
        reasons.append("stray_marks_ignored")
    out: list[_Group] = []
    for g in groups:
        parts = round(g.w / (DIGIT_ASPECT * typical_h))
        # with a known length, only split when digits are missing (below): a wide 2 or 4
        # split for no reason costs more codes than touching digits do
        if expected is None and g.w > WIDE_RATIO * typical_h and parts >= 2:
            out.extend(_split(g, im.ink, comps.labels, parts))
            reasons.append("split_touching_digits")
        else:
            out.append(g)
    while expected is not None and len(out) < expected:
        widest = max(out, key=lambda g: g.w / max(g.h, 1))
        if widest.w < 0.9 * widest.h:
            break
        i = out.index(widest)
        pieces = _split(widest, im.ink, comps.labels, 2)
        if len(pieces) < 2:
            break
        out[i : i + 1] = pieces
        reasons.append("split_touching_digits")
    if any(g.h < 0.6 * typical_h for g in out):
        reasons.append("uneven_sizes")
    out.sort(key=lambda g: g.x0)
    seg = Segmentation(reasons=sorted(set(reasons)))
    seg.doubtful = any(r in ("split_touching_digits", "uneven_sizes") for r in seg.reasons)
    inv = 1.0 / im.scale
    for g in out:
        sub = comps.labels[g.y0 : g.y1, g.x0 : g.x1]
        ink = im.ink[g.y0 : g.y1, g.x0 : g.x1]
        crop = np.where(np.isin(sub, g.ids), ink, 0).astype(np.uint8)
        seg.crops.append(Normalised(crop_to_mnist(crop), False))
        seg.boxes.append((round(g.x0 * inv), round(g.y0 * inv), round(g.w * inv), round(g.h * inv)))
    return seg
