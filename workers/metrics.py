"""The workers' Prometheus metrics and SLO counts, across Celery's prefork processes.

Pool processes record into `<PROMETHEUS_MULTIPROC_DIR>/worker` (a private temporary directory
when the variable is unset); the Celery main process serves their sum on
`WORKER_METRICS_PORT`. `setup()` runs in the main process before the pool forks
(`worker_init`), and the metrics are created lazily in each pool process: importing this
module (Flower does, through `workers.tasks`) changes nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import orjson
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)

from common.prom import LiveCollector, add_bucketed, use_multiprocess_dir
from common.rollup import (
    BATCH_BUCKETS,
    CONFIDENCE_BINS,
    ROLLUP_TTL_S,
    WORKER_STATS_KEY,
    Rollup,
    confidence_bin,
)

log = logging.getLogger(__name__)

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0)
_WAIT = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
_CONFIDENCE = tuple(round((i + 1) / CONFIDENCE_BINS, 2) for i in range(CONFIDENCE_BINS))


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


ROLLUP = Rollup()
_JOB_BUCKETS = len(_WAIT) + 1


class _Batch:
    """Per-message prediction counts, added to the metrics once per message."""

    def __init__(self) -> None:
        self.digits: dict[str, int] = {}
        self.confidence = [0] * (CONFIDENCE_BINS + 1)
        self.confidence_sum = 0.0
        self.review = 0


_batch = _Batch()


def record_predictions(answers: list[dict]) -> None:
    """`BatchRunner(on_predictions=...)`: one job's answers; counted in memory only."""
    try:
        _count(_batch, answers)
    except Exception:  # metrics must never fail a job
        log.exception("prediction metrics failed")


def _count(batch: _Batch, answers: list[dict]) -> None:
    for answer in answers:
        digit = answer["digit"]
        label = "none" if digit is None else str(digit)
        batch.digits[label] = batch.digits.get(label, 0) + 1
        if digit is not None:
            confidence = answer["confidence"]
            batch.confidence[confidence_bin(confidence)] += 1
            batch.confidence_sum += confidence
        if answer["needs_review"]:
            batch.review += 1


def record_batch(stats, payload: dict, max_batch_size: int) -> None:
    """After `BatchRunner.run`: batch, timing and prediction metrics of one message."""
    global _batch
    batch, _batch = _batch, _Batch()
    try:
        _record(batch, stats, payload, max_batch_size)
    except Exception:  # metrics must never fail (and so redeliver) a message
        log.exception("batch metrics failed")


def _record(batch: _Batch, stats, payload: dict, max_batch_size: int) -> None:
    images = stats.images
    jobs = len(payload.get("jobs", ()))
    job_seconds = max(0.0, time.time() - float(payload.get("enqueued_at", time.time())))
    counts: dict[str, int] = {"batches": 1, "batch_images": images, "jobs": jobs}
    m = metrics()
    for start in range(0, images, max_batch_size):
        m.batch_size.observe(min(max_batch_size, images - start))
    if images:
        m.model_seconds.observe(stats.model_seconds)
    m.queue_wait.observe(stats.queue_wait_seconds)
    if jobs:
        job_buckets = [0] * _JOB_BUCKETS
        job_buckets[_bucket(job_seconds, _WAIT)] = jobs
        add_bucketed(m.job_seconds, job_buckets, job_seconds * jobs)
    for label, n in batch.digits.items():
        m.predictions.labels(label).inc(n)
        counts[f"pred:{label}"] = n
    add_bucketed(m.confidence, batch.confidence, batch.confidence_sum)
    for index, n in enumerate(batch.confidence[:CONFIDENCE_BINS]):
        if n:
            counts[f"conf:{index}"] = n
    if batch.review:
        m.needs_review.inc(batch.review)
        counts["review"] = batch.review
    duplicates = stats.report.duplicates
    if duplicates:
        m.duplicates.inc(duplicates)
        counts["dup"] = duplicates
    ROLLUP.add_many(counts)
    _process.note_batch(images)


def _bucket(value: float, edges: tuple[float, ...]) -> int:
    for index, edge in enumerate(edges):
        if value <= edge:
            return index
    return len(edges)


class _ProcessStats:
    """This pool process's batch sizes, flushed with its SLO counts every second."""

    def __init__(self) -> None:
        self.batches = 0
        self.images = 0
        self.last_batch = 0
        self.name = ""
        self.client = None
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def note_batch(self, images: int) -> None:
        self.batches += 1
        self.images += images
        self.last_batch = images

    def flush(self) -> None:
        counts = ROLLUP.drain()
        try:
            pipe = self.client.pipeline(transaction=False)
            if counts:
                ROLLUP.pipeline_writes(pipe, counts)
            stats = {
                "batches": self.batches,
                "images": self.images,
                "last_batch": self.last_batch,
                "ts": round(time.time(), 3),
            }
            pipe.hset(WORKER_STATS_KEY, self.name, orjson.dumps(stats))
            pipe.expire(WORKER_STATS_KEY, ROLLUP_TTL_S)
            pipe.execute()
        except Exception as exc:  # Redis down: keep the counts for the next flush
            ROLLUP.add_many(counts)
            log.warning("SLO counts not flushed: %s", exc)

    def run(self, interval_s: float) -> None:
        while not self.stopped.wait(interval_s):
            self.flush()


_process = _ProcessStats()


def process_started(client, name: str, model_name: str, model_version: str) -> None:
    """In a pool process once its model is loaded: report up, and start flushing counts."""
    metrics().model_info.labels(model_name, model_version).set(1)
    metrics().worker_up.set(1)
    _process.client, _process.name = client, name
    _process.thread = threading.Thread(
        target=_process.run, args=(1.0,), name="slo-rollup-flush", daemon=True
    )
    _process.thread.start()


def process_stopping() -> None:
    """In a pool process on shutdown: last flush, and leave the live gauges."""
    _process.stopped.set()
    if _process.client is not None:
        _process.flush()
        try:
            _process.client.hdel(WORKER_STATS_KEY, _process.name)
        except Exception as exc:  # shutting down: a stale entry is only read for live workers
            log.warning("worker stats not removed: %s", exc)
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
