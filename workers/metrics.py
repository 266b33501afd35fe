"""The workers' Prometheus metrics, across Celery's prefork processes.

Pool processes record into `<PROMETHEUS_MULTIPROC_DIR>/worker` (a private temporary directory
when the variable is unset); the Celery main process serves their sum on
`DIGITS_WORKER_METRICS_PORT`. `setup()` runs in the main process before the pool forks
(`worker_init`), and the metrics are created lazily in each pool process: importing this
module (Flower does, through `workers.tasks`) changes nothing.

Drift lives with the model: each process exports the reference distributions of the version
it serves (its metadata.json `reference`) next to its predicted-class counters, so the API and
Prometheus compare the two without reading the registry.
"""

from __future__ import annotations

import logging
import os
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)

from common.postcode import REVIEW_REASONS
from common.prom import LiveCollector, use_multiprocess_dir

log = logging.getLogger(__name__)

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0)
_WAIT = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONFIDENCE_BINS = 20
"""Width 0.05, the bins of `reference.test_confidence_histogram` in the model's metadata."""
_CONFIDENCE = tuple(round((i + 1) / CONFIDENCE_BINS, 2) for i in range(CONFIDENCE_BINS))
DIGIT_LABELS = (*map(str, range(10)), "none")


class _Metrics:
    """Created once per pool process, after `setup()` chose the storage in the main process."""

    def __init__(self) -> None:
        self.batch_size = Histogram(
            "digits_batch_size", "Images per model call.", buckets=BATCH_BUCKETS
        )
        self.model_seconds = Histogram(
            "digits_model_seconds",
            "Model time per message (all its model calls).",
            buckets=_SECONDS,
        )
        self.queue_wait = Histogram(
            "digits_queue_wait_seconds", "Enqueue to batch start, per message.", buckets=_WAIT
        )
        self.job_seconds = Histogram(
            "digits_job_seconds", "Enqueue to result written, per job.", buckets=_WAIT
        )
        self.predictions = Counter(
            "digits_predictions", "Predicted digits ('none' for blank images).", ["digit"]
        )
        self.confidence = Histogram(
            "digits_confidence", "Confidence of each predicted digit.", buckets=_CONFIDENCE
        )
        self.needs_review = Counter("digits_needs_review", "Predictions marked for human review.")
        # Per model version (canary against production; training/canary.py reads them).
        self.version_images = Counter(
            "digits_version_images", "Images answered, by model version.", ["version"]
        )
        self.version_flagged = Counter(
            "digits_version_needs_review",
            "Images flagged for human review, by model version.",
            ["version"],
        )
        self.version_model_seconds = Histogram(
            "digits_version_model_seconds",
            "Model time per message, by model version.",
            ["version"],
            buckets=_SECONDS,
        )
        self.postcodes = Counter(
            "digits_postcodes",
            "Postal codes read, one per envelope image, by outcome: read or needs_review.",
            ["outcome"],
        )
        self.postcode_reasons = Counter(
            "digits_postcode_review_reasons",
            "Why flagged postal codes need review (a code can have several reasons).",
            ["reason"],
        )
        for outcome in POSTCODE_OUTCOMES:  # at 0 from the start: increase() sees the first
            self.postcodes.labels(outcome)
        for reason in REVIEW_REASONS:
            self.postcode_reasons.labels(reason)
        self.duplicates = Counter(
            "digits_duplicate_results", "Results dropped because the job already had one."
        )
        self.model_info = Gauge(
            "digits_model_info",
            "The model served by live worker processes (value 1).",
            ["name", "version"],
            multiprocess_mode="livemax",
        )
        self.worker_up = Gauge(
            "digits_worker_up", "Worker processes with a loaded model.", multiprocess_mode="livesum"
        )
        self.reference_classes = Gauge(
            "digits_model_reference_class_share",
            "Share of each predicted class on the served model's test set (its metadata).",
            ["name", "version", "digit"],
            multiprocess_mode="livemax",
        )
        self.reference_confidence = Gauge(
            "digits_model_reference_confidence_share",
            "Share of test-set confidences in each bin (upper edge `le`), from its metadata.",
            ["name", "version", "le"],
            multiprocess_mode="livemax",
        )


POSTCODE_OUTCOMES = ("read", "needs_review")

_metrics: _Metrics | None = None
MULTIPROC_DIR = ""


def metrics() -> _Metrics:
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()
    return _metrics


def setup() -> None:
    """In the Celery main process before the pool forks: where every process writes."""
    global MULTIPROC_DIR
    MULTIPROC_DIR = use_multiprocess_dir("worker", private_if_unset=True, clear=True)


def record_predictions(answers: list[dict]) -> None:
    """`BatchRunner(on_predictions=...)`: one job's answers."""
    try:
        _count(metrics(), answers)
    except Exception:  # metrics must never fail a job
        log.exception("prediction metrics failed")


def record_postcodes(codes: list[dict]) -> None:
    """`BatchRunner(on_postcodes=...)`: one job's assembled codes (envelopes, not digits)."""
    try:
        m = metrics()
        for code in codes:
            flagged = bool(code.get("needs_review"))
            m.postcodes.labels("needs_review" if flagged else "read").inc()
            for reason in code.get("reasons", ()):
                m.postcode_reasons.labels(reason).inc()
    except Exception:  # metrics must never fail a job
        log.exception("postcode metrics failed")


def _count(m: _Metrics, answers: list[dict]) -> None:
    digits: dict[str, int] = {}
    review = 0
    for answer in answers:
        digit = answer["digit"]
        label = "none" if digit is None else str(digit)
        digits[label] = digits.get(label, 0) + 1
        if digit is not None:
            m.confidence.observe(answer["confidence"])
        review += bool(answer["needs_review"])
    for label, n in digits.items():
        m.predictions.labels(label).inc(n)
    if review:
        m.needs_review.inc(review)


def record_batch(stats, payload: dict, max_batch_size: int) -> None:
    """After `BatchRunner.run`: batch and timing metrics of one message."""
    try:
        _record(metrics(), stats, payload, max_batch_size)
    except Exception:  # metrics must never fail (and so redeliver) a message
        log.exception("batch metrics failed")


def _record(m: _Metrics, stats, payload: dict, max_batch_size: int) -> None:
    images = stats.images
    for start in range(0, images, max_batch_size):
        m.batch_size.observe(min(max_batch_size, images - start))
    if images:
        m.model_seconds.observe(stats.model_seconds)
    m.queue_wait.observe(stats.queue_wait_seconds)
    job_seconds = max(0.0, time.time() - float(payload.get("enqueued_at", time.time())))
    for _ in payload.get("jobs", ()):
        m.job_seconds.observe(job_seconds)
    if stats.report.duplicates:
        m.duplicates.inc(stats.report.duplicates)
    if images and stats.model_version:
        m.version_images.labels(stats.model_version).inc(images)
        if stats.flagged:
            m.version_flagged.labels(stats.model_version).inc(stats.flagged)
        m.version_model_seconds.labels(stats.model_version).observe(stats.model_seconds)


def reference_of(metadata: dict) -> tuple[list[float], list[float]]:
    """(class shares, confidence-bin shares) a version's metadata.json records, or empty."""
    reference = metadata.get("reference") or {}
    classes = reference.get("test_predicted_class_distribution") or reference.get(
        "train_label_distribution"
    )
    confidence = (reference.get("test_confidence_histogram") or {}).get("fractions") or []
    classes = [float(p) for p in classes] if classes and len(classes) == 10 else []
    confidence = [float(p) for p in confidence] if len(confidence) == CONFIDENCE_BINS else []
    return classes, confidence


def process_started(model_name: str, model_version: str, metadata: dict) -> None:
    """In a pool process once its model is loaded: report up, with the model's reference."""
    m = metrics()
    m.model_info.labels(model_name, model_version).set(1)
    classes, confidence = reference_of(metadata)
    for digit, share in enumerate(classes):
        m.reference_classes.labels(model_name, model_version, str(digit)).set(share)
    for edge, share in zip(_CONFIDENCE, confidence, strict=False):
        m.reference_confidence.labels(model_name, model_version, str(edge)).set(share)
    for label in DIGIT_LABELS:  # at zero: Prometheus' increase() needs to see the start
        m.predictions.labels(label)
    m.needs_review.inc(0)
    version_serving(model_version)
    m.worker_up.set(1)


def version_serving(version: str) -> None:
    """A version (production or the canary) starts serving here: its per-version series
    exist at zero before its first batch, so windowed `increase()` counts that batch too."""
    m = metrics()
    m.version_images.labels(version)
    m.version_flagged.labels(version)
    m.version_model_seconds.labels(version)


def process_stopping() -> None:
    """In a pool process on shutdown: leave the live gauges."""
    if MULTIPROC_DIR:
        multiprocess.mark_process_dead(os.getpid(), MULTIPROC_DIR)


def serve(port: int, host: str = "0.0.0.0") -> None:
    """In the Celery main process: serve all pool processes' metrics (port 0: disabled)."""
    if not port or not MULTIPROC_DIR:
        return
    registry = CollectorRegistry()
    registry.register(LiveCollector(MULTIPROC_DIR))
    try:
        start_http_server(port, host, registry)
    except OSError as exc:  # a busy port must not stop the worker from working
        log.warning("worker metrics not served on port %s: %s", port, exc)
        return
    log.info("worker metrics on port %s", port)
