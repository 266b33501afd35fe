"""Export the examples people labelled in the review queue, for retraining.

`python -m training reviews export --out reviewed.npz` writes `x` (N, 28, 28) uint8 in the
MNIST convention, `y` (N,) int64 labels, `model_digit` (-1 where the model saw no digit),
`confidence` and `ids`, read from Redis (`REDIS_URL`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import redis

from common.contract import IMAGE_SIDE
from common.reviews import LABELLED_IMAGES_KEY, LABELLED_KEY


def export_labelled(redis_url: str, out: Path) -> int:
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10)
    labels = client.hgetall(LABELLED_KEY)
    images = client.hgetall(LABELLED_IMAGES_KEY)
    ids = sorted(rid for rid in labels if rid in images)
    records = [json.loads(labels[rid]) for rid in ids]
    x = (
        np.stack(
            [np.frombuffer(images[rid], np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE) for rid in ids]
        )
        if ids
        else np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        x=x,
        y=np.array([r["label"] for r in records], dtype=np.int64),
        model_digit=np.array(
            [-1 if r.get("model_digit") is None else r["model_digit"] for r in records],
            dtype=np.int64,
        ),
        confidence=np.array([r.get("confidence") or 0.0 for r in records], dtype=np.float64),
        ids=np.array([rid.decode() for rid in ids]),
    )
    return len(ids)
