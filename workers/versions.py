"""Per-version counters, so a canary can be compared with production in Prometheus.

Labelled by the version that ran each batch (`BatchStats.model_version`): images served,
images flagged for review, model time per message. Created lazily in each pool process, in
the multiprocess directory `workers.metrics.setup()` chose, so the worker's metrics port
serves them with the rest.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram

from workers.inference import BatchStats

log = logging.getLogger(__name__)

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class _VersionMetrics:
    def __init__(self) -> None:
        self.images = Counter(
            "digits_version_images", "Images answered, by model version.", ["version"]
        )
        self.flagged = Counter(
            "digits_version_needs_review",
            "Images flagged for human review, by model version.",
            ["version"],
        )
        self.model_seconds = Histogram(
            "digits_version_model_seconds",
            "Model time per message, by model version.",
            ["version"],
            buckets=_SECONDS,
        )


_metrics: _VersionMetrics | None = None


def record(stats: BatchStats) -> None:
    """After each batch; never fails it."""
    global _metrics
    if not stats.images or not stats.model_version:
        return
    try:
        if _metrics is None:
            _metrics = _VersionMetrics()
        version = stats.model_version
        _metrics.images.labels(version).inc(stats.images)
        if stats.flagged:
            _metrics.flagged.labels(version).inc(stats.flagged)
        _metrics.model_seconds.labels(version).observe(stats.model_seconds)
    except Exception:
        log.exception("version metrics failed")
