"""Per-minute counters in Redis: how `/v1/slo` sees every process without a Prometheus server.

Each process counts in memory (one dict increment per event) and a background flush adds
its counts to the hashes `digits:slo:<unix minute>` and `digits:slo:h:<unix hour>` every
second (HINCRBY, 26 h TTL). A reader sums the minutes of the short windows and the hours of
the 24 h window (84 small hashes, not 1,440). Counts from any number of API processes and
workers add up exactly; a process that dies loses at most its last second. Field names are
bounded (route templates, error codes, digits, bucket indices), never job ids.
"""

from __future__ import annotations

import bisect
import threading
import time

from common.contract import KEY_PREFIX

ROLLUP_PREFIX = f"{KEY_PREFIX}:slo:"
HOUR_PREFIX = f"{KEY_PREFIX}:slo:h:"
ROLLUP_TTL_S = 26 * 3600
WORKER_STATS_KEY = f"{KEY_PREFIX}:slo:workers"
"""Hash: worker name -> JSON {batches, images, last_batch, ts}: batch sizes per live worker."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0)
"""Seconds; the same edges as `digits_http_request_duration_seconds` (2.0 is the objective)."""
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONFIDENCE_BINS = 20
"""Width 0.05, the bins of `reference.test_confidence_histogram` in the model's metadata."""


def minute_key(unix_s: float) -> str:
    return f"{ROLLUP_PREFIX}{int(unix_s // 60)}"


def hour_key(unix_s: float) -> str:
    return f"{HOUR_PREFIX}{int(unix_s // 3600)}"


def latency_bucket(seconds: float) -> int:
    """Index of the first bucket whose upper edge is >= seconds (`len(LATENCY_BUCKETS)` = +Inf)."""
    return bisect.bisect_left(LATENCY_BUCKETS, seconds)


def confidence_bin(confidence: float) -> int:
    return min(CONFIDENCE_BINS - 1, max(0, int(confidence * CONFIDENCE_BINS)))


class Rollup:
    """In-memory counts of one process, drained by a flusher into the current minute's hash."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        # NOTE: workers add from the task thread while the flusher drains from another.
        self._lock = threading.Lock()

    def add(self, field: str, n: int = 1) -> None:
        with self._lock:
            self._counts[field] = self._counts.get(field, 0) + n

    def add_many(self, counts: dict[str, int]) -> None:
        with self._lock:
            for field, n in counts.items():
                self._counts[field] = self._counts.get(field, 0) + n

    def drain(self) -> dict[str, int]:
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts

    def pipeline_writes(self, pipe, counts: dict[str, int], now: float | None = None) -> None:
        """Queue the HINCRBYs of `counts` on a (sync or async) Redis pipeline."""
        now = time.time() if now is None else now
        for key in (minute_key(now), hour_key(now)):
            for field, n in counts.items():
                pipe.hincrby(key, field, n)
            pipe.expire(key, ROLLUP_TTL_S)
