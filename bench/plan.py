"""How much load each mode sends: full (< 10 min), quick (~2 min), smoke (seconds, for tests)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    name: str
    repeats: int
    step_s: float
    """Seconds of offered load per ladder step and repeat."""
    ladder: tuple[int, ...]
    jpeg_rates: tuple[int, ...]
    batch_concurrency: int
    batch_images: int
    burst_trucks: int
    burst_images: int
    """Images per truck (job)."""
    probe_rate: float
    """Sync single-image requests/s sent while the burst drains."""
    model_seconds: float
    model_batches: tuple[int, ...] = (1, 32, 256)
    burst_timeout_s: float = 180.0


FULL = Plan("full", 3, 5.0, (100, 250, 500, 1000, 1500), (25, 100), 4, 256, 200, 100, 20, 1.0)
QUICK = Plan("quick", 1, 3.0, (100, 250, 500, 1000, 1500), (25, 100), 4, 256, 200, 100, 20, 0.5)
SMOKE = Plan("smoke", 1, 1.0, (10, 20), (5,), 1, 8, 4, 5, 5, 0.1, (1, 32), 60.0)
PLANS = {plan.name: plan for plan in (FULL, QUICK, SMOKE)}

MATRIX_LADDER = (500, 1000)
"""Offered rates compared across configurations with `--matrix`."""
