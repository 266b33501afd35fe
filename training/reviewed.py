"""Reviewed examples as a training input and a gate set (issue 14 item 4).

The file is what `python -m training reviews export` writes: `x`/`y`/`ids` for the items a
person labelled with a digit, `no_digit_*` for the ones a person answered "no digit" (never
trained on as a digit: they are counted and left out). Each labelled example goes to the
held-out gate slice or to training by a hash of its review id, so an example keeps its side
across exports as the file grows, and the gate never scores a model on what it trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.data import file_sha256

HELDOUT_SHARE = 0.2
"""Share of the reviewed digits kept out of training for the registry gate."""


@dataclass(frozen=True)
class ReviewedSet:
    path: Path
    sha256: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_heldout: np.ndarray
    y_heldout: np.ndarray
    no_digit: int

    def describe(self) -> dict[str, Any]:
        return {
            "source": str(self.path),
            "sha256": self.sha256,
            "train_examples": len(self.y_train),
            "heldout_examples": len(self.y_heldout),
            "no_digit_examples": self.no_digit,
            "heldout_share": HELDOUT_SHARE,
        }


def heldout(review_id: str) -> bool:
    digest = hashlib.blake2b(review_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64 < HELDOUT_SHARE


def load_reviewed(path: Path) -> ReviewedSet:
    with np.load(path) as data:
        x, y, ids = data["x"], data["y"].astype(np.int64), [str(i) for i in data["ids"]]
        no_digit = len(data["no_digit_ids"]) if "no_digit_ids" in data else 0
    if x.dtype != np.uint8 or x.shape[1:] != (28, 28) or len(x) != len(y) != len(ids):
        raise ValueError(f"{path}: expected x (N, 28, 28) uint8, y and ids of N")
    mask = np.array([heldout(i) for i in ids], dtype=bool)
    return ReviewedSet(path, file_sha256(path), x[~mask], y[~mask], x[mask], y[mask], no_digit)
