"""Export the examples people labelled in the review queue, for retraining.

`python -m training reviews export --out reviewed.npz` writes `x` (N, 28, 28) uint8 in the
MNIST convention, `y` (N,) int64 labels, `model_digit` (-1 where the model saw no digit),
`confidence` and `ids`, read from Redis (`DIGITS_REDIS_URL`).

Items a person answered "no digit" (`verdict: "no_digit"`, no label) are NOT in `x`/`y`:
they go to `no_digit_x`, `no_digit_model_digit`, `no_digit_confidence` and `no_digit_ids`,
so a retraining run never learns an invented digit from a blank envelope.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import redis

from common.contract import IMAGE_SIDE
from common.reviews import LABELLED_IMAGES_KEY, LABELLED_KEY


def _stack(images: dict, ids: list) -> np.ndarray:
    if not ids:
        return np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    return np.stack(
        [np.frombuffer(images[rid], np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE) for rid in ids]
    )


def _model_digits(records: list[dict]) -> np.ndarray:
    return np.array(
        [-1 if r.get("model_digit") is None else r["model_digit"] for r in records],
        dtype=np.int64,
    )


def _confidences(records: list[dict]) -> np.ndarray:
    return np.array([r.get("confidence") or 0.0 for r in records], dtype=np.float64)


def export_labelled(redis_url: str, out: Path) -> int:
    """Write the .npz; returns the number of labelled digits (no-digit answers not counted)."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10)
    labels = client.hgetall(LABELLED_KEY)
    images = client.hgetall(LABELLED_IMAGES_KEY)
    records = {rid: json.loads(labels[rid]) for rid in sorted(labels) if rid in images}
    digit_ids = [rid for rid, r in records.items() if r.get("label") is not None]
    none_ids = [rid for rid, r in records.items() if r.get("label") is None]
    digits = [records[rid] for rid in digit_ids]
    nones = [records[rid] for rid in none_ids]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        x=_stack(images, digit_ids),
        y=np.array([r["label"] for r in digits], dtype=np.int64),
        model_digit=_model_digits(digits),
        confidence=_confidences(digits),
        ids=np.array([rid.decode() for rid in digit_ids], dtype=str),
        no_digit_x=_stack(images, none_ids),
        no_digit_model_digit=_model_digits(nones),
        no_digit_confidence=_confidences(nones),
        no_digit_ids=np.array([rid.decode() for rid in none_ids], dtype=str),
    )
    return len(digit_ids)
