"""Turn per-digit predictions into a postal-code answer, deciding when a human must look."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

REASON_LOW_CONFIDENCE = "low_confidence"
REASON_LENGTH = "length_mismatch"
REASON_DOUBTFUL = "doubtful_segmentation"
REASON_NO_DIGIT = "no_digit_found"


def assemble(
    digits: Sequence[tuple[int, float]],
    boxes: Sequence[Sequence[int]],
    *,
    expected_length: int | None,
    threshold: float,
    doubtful: bool,
) -> dict[str, Any]:
    """Per-digit (digit, confidence) in left-to-right order -> the postcode result.

    `confidence` is the PRODUCT of the digit confidences: the model's probability that the
    whole code is right if digits err independently, so one shaky digit in five shows. The
    review decision, though, is per digit (any digit below `threshold`), plus count and
    segmentation checks.
    """
    if len(digits) != len(boxes):
        raise ValueError("digits and boxes must have the same length")
    reasons: list[str] = []
    if not digits:
        reasons.append(REASON_NO_DIGIT)
    if any(conf < threshold for _, conf in digits):
        reasons.append(REASON_LOW_CONFIDENCE)
    if expected_length is not None and digits and len(digits) != expected_length:
        reasons.append(REASON_LENGTH)
    if doubtful and digits:
        reasons.append(REASON_DOUBTFUL)
    confidence = 1.0
    for _, conf in digits:
        confidence *= float(conf)
    return {
        "text": "".join(str(int(d)) for d, _ in digits),
        "confidence": confidence if digits else 0.0,
        "needs_review": bool(reasons),
        "reasons": reasons,
        "digits": [
            {"digit": int(d), "confidence": float(c), "box": [int(v) for v in box]}
            for (d, c), box in zip(digits, boxes, strict=True)
        ],
    }
