"""Section 1: the ceiling: the worker's inference call alone, no queue, no HTTP."""

from __future__ import annotations

import time

import numpy as np

from workers.model import DigitModel


def model_limit(
    batch_sizes: tuple[int, ...], threads: int, seconds: float
) -> list[dict[str, float]]:
    """Images/s of `DigitModel.predict` per batch size, with `threads` intra-op threads."""
    model = DigitModel.load("models", "mnist_cnn", "production", threads=threads)
    rng = np.random.default_rng(0)
    rows = []
    for size in batch_sizes:
        images = rng.integers(0, 256, (size, 28, 28), dtype=np.uint8)
        model.predict(images)  # warm-up for this shape
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            model.predict(images)
            calls += 1
        rows.append(
            {
                "threads": threads,
                "batch": size,
                "images_per_s": calls * size / elapsed,
                "ms_per_call": elapsed / calls * 1e3,
            }
        )
    return rows
