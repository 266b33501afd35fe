"""The peers bench's samples are what their names say (`--sample drawn` is the full path)."""

from __future__ import annotations

from bench.samples import drawn_pngs
from common import imaging


def test_drawn_digits_take_the_full_normalisation():
    pngs = drawn_pngs(20)
    assert len(set(pngs)) == 20
    for png in pngs:
        gray = imaging.decode(png)
        assert gray.shape == (28, 28)
        assert imaging._mnist_like(gray) is None, "not passed through: normalised in full"
        assert not imaging.normalise(gray).blank
