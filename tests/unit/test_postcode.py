"""`assemble`: the review rules of a postal-code answer."""

from __future__ import annotations

import math

import pytest

from common.postcode import assemble

BOXES = [(10 * i, 0, 8, 12) for i in range(5)]
GOOD = [(9, 0.99), (0, 0.98), (2, 0.97), (1, 0.995), (0, 0.99)]


def test_confident_code_of_the_expected_length() -> None:
    res = assemble(GOOD, BOXES, expected_length=5, threshold=0.9, doubtful=False)
    assert res["text"] == "90210"
    assert not res["needs_review"] and res["reasons"] == []
    assert math.isclose(res["confidence"], math.prod(c for _, c in GOOD))
    assert res["digits"][2] == {"digit": 2, "confidence": 0.97, "box": [20, 0, 8, 12]}


def test_one_low_digit_needs_review() -> None:
    digits = [*GOOD[:4], (0, 0.6)]
    res = assemble(digits, BOXES, expected_length=5, threshold=0.9, doubtful=False)
    assert res["needs_review"] and res["reasons"] == ["low_confidence"]
    assert res["text"] == "90210"


def test_threshold_is_inclusive_of_equal_confidence() -> None:
    digits = [(d, 0.9) for d, _ in GOOD]
    assert not assemble(digits, BOXES, expected_length=5, threshold=0.9, doubtful=False)[
        "needs_review"
    ]


@pytest.mark.parametrize("expected", [4, 6])
def test_length_mismatch(expected: int) -> None:
    res = assemble(GOOD, BOXES, expected_length=expected, threshold=0.5, doubtful=False)
    assert res["needs_review"] and res["reasons"] == ["length_mismatch"]


def test_no_expected_length_accepts_any_count() -> None:
    res = assemble(GOOD[:3], BOXES[:3], expected_length=None, threshold=0.5, doubtful=False)
    assert not res["needs_review"] and res["text"] == "902"


def test_doubtful_segmentation() -> None:
    res = assemble(GOOD, BOXES, expected_length=5, threshold=0.5, doubtful=True)
    assert res["needs_review"] and res["reasons"] == ["doubtful_segmentation"]


def test_nothing_found() -> None:
    res = assemble([], [], expected_length=5, threshold=0.5, doubtful=True)
    assert res["needs_review"] and res["reasons"] == ["no_digit_found"]
    assert res["text"] == "" and res["confidence"] == 0.0 and res["digits"] == []


def test_several_reasons_together() -> None:
    res = assemble([(1, 0.3)], BOXES[:1], expected_length=5, threshold=0.9, doubtful=True)
    assert res["reasons"] == ["low_confidence", "length_mismatch", "doubtful_segmentation"]


def test_mismatched_boxes_are_a_programming_error() -> None:
    with pytest.raises(ValueError):
        assemble(GOOD, BOXES[:2], expected_length=5, threshold=0.5, doubtful=False)
