"""`assemble`: a postal-code answer from its digits' probabilities, and its review rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.decoding import PostcodeDirectory
from common.postcode import assemble, digits_to_review

BOXES = [(10 * i, 0, 8, 12) for i in range(5)]
GOOD = [(9, 0.99), (0, 0.98), (2, 0.97), (1, 0.995), (0, 0.99)]


def probs(digits: list[tuple[int, float]], second: dict[int, int] | None = None) -> np.ndarray:
    """(n, 10): each digit's top probability; the rest on `second[k]` or spread evenly."""
    rows = np.zeros((len(digits), 10), np.float32)
    for k, (d, p) in enumerate(digits):
        if second and k in second:
            rows[k, second[k]] = 1.0 - p
        else:
            rows[k] = (1.0 - p) / 9
        rows[k, d] = p
    return rows


def test_confident_code_of_the_expected_length() -> None:
    res = assemble(probs(GOOD), BOXES, expected_length=5, threshold=0.9)
    assert res["text"] == "90210" and res["decoding"] == "digits"
    assert not res["needs_review"] and res["reasons"] == []
    product = math.prod(c for _, c in GOOD)
    assert math.isclose(res["confidence"], product, rel_tol=1e-5)
    assert res["probability"] == res["confidence"]
    digit = res["digits"][2]
    assert digit["digit"] == 2 and digit["confidence"] == 0.97 and digit["box"] == [20, 0, 8, 12]
    assert len(digit["probabilities"]) == 10 and math.isclose(
        sum(digit["probabilities"]), 1, abs_tol=1e-5
    )
    assert res["per_digit_text"] == "90210" and res["runner_up"]["text"] != "90210"
    assert res["doubtful_segmentation"] is False and res["segmentation"] == []


def test_review_is_decided_on_the_code_probability() -> None:
    # every digit passes a 0.9 digit threshold, but the code (0.91^5 = 0.62) does not
    digits = [(d, 0.91) for d, _ in GOOD]
    res = assemble(probs(digits), BOXES, expected_length=5, threshold=0.9)
    assert res["needs_review"] and res["reasons"] == ["low_confidence"]
    assert math.isclose(res["probability"], 0.91**5, rel_tol=1e-5)
    assert not assemble(probs(digits), BOXES, expected_length=5, threshold=0.6)["needs_review"]


def test_threshold_is_inclusive_of_equal_probability() -> None:
    digits = [(d, 1.0) for d, _ in GOOD]
    res = assemble(probs(digits), BOXES, expected_length=5, threshold=1.0)
    assert res["probability"] == 1.0 and not res["needs_review"]


@pytest.mark.parametrize("expected", [4, 6])
def test_length_mismatch(expected: int) -> None:
    res = assemble(probs(GOOD), BOXES, expected_length=expected, threshold=0.5)
    assert res["needs_review"] and res["reasons"] == ["length_mismatch"]


def test_no_expected_length_accepts_any_count() -> None:
    res = assemble(probs(GOOD[:3]), BOXES[:3], expected_length=None, threshold=0.5)
    assert not res["needs_review"] and res["text"] == "902"


def test_doubtful_segmentation_is_reported_not_a_reason() -> None:
    res = assemble(
        probs(GOOD),
        BOXES,
        expected_length=5,
        threshold=0.5,
        doubtful=True,
        segmentation=["split_touching_digits"],
    )
    assert not res["needs_review"] and res["reasons"] == []
    assert res["doubtful_segmentation"] is True
    assert res["segmentation"] == ["split_touching_digits"]


def test_nothing_found() -> None:
    res = assemble(
        np.zeros((0, 10)), [], expected_length=5, threshold=0.5, segmentation=["no_digit_found"]
    )
    assert res["needs_review"] and res["reasons"] == ["no_digit_found"]
    assert res["text"] == "" and res["confidence"] == 0.0 and res["digits"] == []
    assert res["probability"] == 0.0 and res["runner_up"] is None and res["segmentation"] == []


def test_several_reasons_together() -> None:
    res = assemble(probs([(1, 0.3)]), BOXES[:1], expected_length=5, threshold=0.9, doubtful=True)
    assert res["reasons"] == ["low_confidence", "length_mismatch"]


def test_mismatched_boxes_are_a_programming_error() -> None:
    with pytest.raises(ValueError):
        assemble(probs(GOOD), BOXES[:2], expected_length=5, threshold=0.5)


# --------------------------------------------------------------------------- directory


DIRECTORY = PostcodeDirectory.from_codes(["90210", "90211", "10001", "1234"])


def test_directory_decoding_corrects_a_shaky_digit() -> None:
    # the model reads 90270 (7 at 0.55, 1 at 0.45): not a valid code; 90210 is
    digits = [*GOOD[:3], (7, 0.55), GOOD[4]]
    res = assemble(
        probs(digits, second={3: 1}), BOXES, expected_length=5, threshold=0.9, directory=DIRECTORY
    )
    assert res["decoding"] == "directory" and res["text"] == "90210"
    assert res["per_digit_text"] == "90270"
    assert [d["digit"] for d in res["digits"]] == [9, 0, 2, 1, 0]
    assert res["digits"][3]["confidence"] == 0.45  # the model's p(1) there, not its 0.55
    assert res["probability"] > 0.9 and not res["needs_review"]
    assert res["runner_up"]["text"] == "90211"
    assert res["runner_up"]["probability"] < 0.1
    assert math.isclose(res["probability"] + res["runner_up"]["probability"], 1.0, abs_tol=1e-3)


def test_directory_with_two_close_valid_codes_needs_review() -> None:
    digits = [*GOOD[:4], (0, 0.5)]
    res = assemble(
        probs(digits, second={4: 1}), BOXES, expected_length=5, threshold=0.9, directory=DIRECTORY
    )
    assert res["text"] in {"90210", "90211"} and res["needs_review"]
    assert res["reasons"] == ["low_confidence"]
    assert math.isclose(res["probability"], 0.5, abs_tol=0.01)


def test_segmented_length_not_in_the_directory() -> None:
    res = assemble(
        probs(GOOD[:3]), BOXES[:3], expected_length=None, threshold=0.5, directory=DIRECTORY
    )
    assert res["decoding"] == "digits" and res["text"] == "902"
    assert res["needs_review"] and res["reasons"] == ["length_not_in_directory"]


# --------------------------------------------------------------------------- review items


def test_digits_to_review() -> None:
    accepted = assemble(probs(GOOD), BOXES, expected_length=5, threshold=0.5)
    assert digits_to_review(accepted, 0.9) == []
    # flagged for the code's probability, one digit below the digit threshold
    shaky = [*GOOD[:2], (2, 0.6), *GOOD[3:]]
    code = assemble(probs(shaky), BOXES, expected_length=5, threshold=0.9)
    assert digits_to_review(code, 0.9) == [2]
    # flagged for the code's probability, every digit above the digit threshold: the least one
    even = [(9, 0.95), (0, 0.93), (2, 0.97), (1, 0.96), (0, 0.95)]
    code = assemble(probs(even), BOXES, expected_length=5, threshold=0.9)
    assert code["reasons"] == ["low_confidence"] and digits_to_review(code, 0.9) == [1]
    # flagged only for its length: no single digit to label
    code = assemble(probs(GOOD), BOXES, expected_length=6, threshold=0.5)
    assert code["needs_review"] and digits_to_review(code, 0.9) == []
