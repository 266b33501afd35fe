"""Turn a code's per-digit probabilities into a postal-code answer, deciding when a human must look.

The code is read as a whole (`common.decoding.decode_code`): per-digit argmax without a
directory, the most likely valid code with one. The review decision is the CODE's
probability against `DIGITS_POSTCODE_REVIEW_THRESHOLD`, plus the checks that mean segmentation
failed (nothing found, a count other than the expected length or than any directory code).
Segmentation doubt (touching digits split, uneven sizes) is reported, not a reason by itself:
on the evaluation sets most doubtful codes were read right, and a badly cut digit already
shows as a low code probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from common.decoding import DECODING_DIGITS, PostcodeDirectory, decode_code

REASON_LOW_CONFIDENCE = "low_confidence"
REASON_LENGTH = "length_mismatch"
REASON_NOT_IN_DIRECTORY = "length_not_in_directory"
REASON_NO_DIGIT = "no_digit_found"
REASON_DOUBTFUL = "doubtful_segmentation"
"""No longer a review reason (see the module doc); kept as the name of the answer's flag."""
REVIEW_REASONS = (REASON_LOW_CONFIDENCE, REASON_LENGTH, REASON_NOT_IN_DIRECTORY, REASON_NO_DIGIT)
"""Every reason a code can need review for (its answer's `reasons`)."""


def assemble(
    probabilities: np.ndarray | Sequence[Sequence[float]],
    boxes: Sequence[Sequence[int]],
    *,
    expected_length: int | None,
    threshold: float,
    doubtful: bool = False,
    segmentation: Sequence[str] = (),
    directory: PostcodeDirectory | None = None,
) -> dict[str, Any]:
    """(n, 10) calibrated probabilities of the digits, left to right -> the postcode answer.

    `confidence` and `probability` are the same number, the probability that the whole code
    is right: without a directory the product of the digits' top probabilities, with one
    the posterior of the chosen code among the directory's codes of that length.
    `threshold` is the code-level review threshold (`DIGITS_POSTCODE_REVIEW_THRESHOLD`).
    """
    probabilities = np.asarray(probabilities, dtype=np.float32).reshape(-1, 10)
    if len(probabilities) != len(boxes):
        raise ValueError("probabilities and boxes must have the same length")
    count = len(probabilities)
    reasons: list[str] = []
    notes = sorted(set(segmentation) - {REASON_NO_DIGIT})
    base: dict[str, Any] = {
        "doubtful_segmentation": bool(doubtful and count),
        "segmentation": notes,
    }
    if not count:
        return {
            "text": "",
            "confidence": 0.0,
            "probability": 0.0,
            "decoding": DECODING_DIGITS,
            "runner_up": None,
            "per_digit_text": "",
            "needs_review": True,
            "reasons": [REASON_NO_DIGIT],
            **base,
            "digits": [],
        }
    reading = decode_code(probabilities, directory)
    if reading.probability < threshold:
        reasons.append(REASON_LOW_CONFIDENCE)
    if expected_length is not None and count != expected_length:
        reasons.append(REASON_LENGTH)
    if reading.length_in_directory is False:
        reasons.append(REASON_NOT_IN_DIRECTORY)
    rounded = np.round(probabilities.astype(np.float64), 6)
    digits = []
    for k, (char, box) in enumerate(zip(reading.text, boxes, strict=True)):
        digit = int(char)
        digits.append(
            {
                "digit": digit,
                "confidence": float(rounded[k, digit]),
                "box": [int(v) for v in box],
                "probabilities": rounded[k].tolist(),
            }
        )
    runner_up = (
        {"text": reading.runner_up[0], "probability": reading.runner_up[1]}
        if reading.runner_up
        else None
    )
    return {
        "text": reading.text,
        "confidence": reading.probability,
        "probability": reading.probability,
        "decoding": reading.decoding,
        "runner_up": runner_up,
        "per_digit_text": reading.per_digit_text,
        "needs_review": bool(reasons),
        "reasons": reasons,
        **base,
        "digits": digits,
    }


def digits_to_review(code: dict[str, Any], digit_threshold: float) -> list[int]:
    """Which digits of a flagged code a person should label: those below `digit_threshold`
    (`DIGITS_REVIEW_THRESHOLD`), or, when the code's probability is low but every digit passes,
    its least confident digit. Nothing for an accepted code, or one flagged only for its
    length (there is no single digit to label)."""
    digits = code.get("digits") or []
    if not code.get("needs_review") or not digits:
        return []
    low = [k for k, d in enumerate(digits) if d["confidence"] < digit_threshold]
    if low:
        return low
    if REASON_LOW_CONFIDENCE in code.get("reasons", ()):
        return [min(range(len(digits)), key=lambda k: digits[k]["confidence"])]
    return []
