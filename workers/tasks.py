"""The `digits.predict` task and the per-process state it runs on."""

from __future__ import annotations

import logging

import redis
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutting_down,
)

from common.contract import TASK_PREDICT
from common.decoding import PostcodeDirectory
from common.logs import configure_logging
from workers import metrics as worker_metrics
from workers import shutdown
from workers.app import celery_app, settings
from workers.heartbeat import Heartbeat, process_name
from workers.inference import BatchRunner
from workers.model import DigitModel
from workers.reload import AliasWatcher
from workers.results import ResultWriter

log = logging.getLogger(__name__)


class _ProcessState:
    runner: BatchRunner | None = None
    heartbeat: Heartbeat | None = None
    watcher: AliasWatcher | None = None
    canary_watcher: AliasWatcher | None = None


_state = _ProcessState()


@worker_process_init.connect
def load_model(**_: object) -> None:
    """After fork: load and warm the model, then start reporting ready."""
    configure_logging("worker", settings.log_level, settings.log_json)
    model = DigitModel.load(
        settings.models_dir, settings.model_name, settings.model_version, settings.inference_threads
    )
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=2.0,
        socket_timeout=settings.worker_redis_timeout_s,
        health_check_interval=30,
    )
    directory = load_directory(settings.postcode_directory)
    name = process_name()
    _state.runner = BatchRunner(
        model,
        ResultWriter(
            client,
            name,
            retry_for_s=settings.result_write_retry_s,
            review_ttl_s=settings.result_ttl_s,
            max_pending_reviews=settings.max_pending_reviews,
        ),
        max_batch_size=settings.model_batch_size,
        review_threshold=settings.review_threshold,
        postcode_review_threshold=settings.postcode_review_threshold,
        directory=directory,
        on_predictions=worker_metrics.record_predictions,
        on_postcodes=worker_metrics.record_postcodes,
        canary_share=settings.canary_share,
    )
    _state.heartbeat = Heartbeat(client, name, settings.heartbeat_interval_s)
    _state.heartbeat.start()
    _state.watcher = watch_alias(model)
    _state.canary_watcher = watch_canary()
    worker_metrics.process_started(model.info.name, model.info.version, model.metadata())
    log.info(
        "model loaded",
        extra={
            "model": model.info.name,
            "version": model.info.version,
            "temperature": model.temperature,
            "postcode_directory": directory.path if directory else None,
            "directory_codes": len(directory) if directory else 0,
        },
    )


def load_directory(path: str) -> PostcodeDirectory | None:
    """`DIGITS_POSTCODE_DIRECTORY` (empty: none). `python -m workers` has already checked the file
    before forking (`workers.__main__`); each pool process loads its own copy once."""
    return PostcodeDirectory.load(path) if path else None


def watch_alias(model: DigitModel) -> AliasWatcher | None:
    """Hot reload when DIGITS_MODEL_VERSION is an alias (a pinned number never moves)."""
    if settings.model_version.isdigit() or settings.model_reload_interval_s <= 0:
        return None
    watcher = AliasWatcher(
        settings.models_dir,
        settings.model_name,
        settings.model_version,
        model.info.version,
        load=load_version,
        on_switch=switch_model,
        interval_s=settings.model_reload_interval_s,
    )
    watcher.start()
    return watcher


def load_version(version: str) -> DigitModel:
    return DigitModel.load(
        settings.models_dir, settings.model_name, version, settings.inference_threads
    )


def watch_canary() -> AliasWatcher | None:
    """DIGITS_CANARY_SHARE > 0: load DIGITS_CANARY_ALIAS now if it exists, and follow it like
    production."""
    if settings.canary_share <= 0 or _state.runner is None:
        return None
    try:
        canary = load_version(settings.canary_alias)
        switch_canary(canary)
        version = canary.info.version
    except Exception as exc:  # no candidate yet (or a broken one): production serves all
        log.warning("no canary model: %s", exc)
        version = None
    watcher = AliasWatcher(
        settings.models_dir,
        settings.model_name,
        settings.canary_alias,
        version,
        load=load_version,
        on_switch=switch_canary,
        on_missing=lambda: switch_canary(None),
        interval_s=settings.model_reload_interval_s or 1.0,
    )
    watcher.start()
    return watcher


def switch_canary(model: DigitModel | None) -> None:
    if _state.runner is not None:
        _state.runner.canary = model
    if model is not None:
        worker_metrics.version_serving(model.info.version)


def switch_model(model: DigitModel) -> None:
    """From the watcher thread, with `model` loaded and warm: the next batch runs on it."""
    if _state.runner is None:
        return
    old = _state.runner.model
    _state.runner.model = model
    try:
        worker_metrics.metrics().model_info.labels(old.info.name, old.info.version).set(0)
        worker_metrics.process_started(model.info.name, model.info.version, model.metadata())
    except Exception:  # metrics must never stop a switch
        log.exception("model metrics not updated")


@worker_shutting_down.connect
def bound_shutdown(**_: object) -> None:
    """In the main process: no pool process may hold the shutdown up beyond the grace."""
    shutdown.stop_children_after(settings.shutdown_grace_s)


@worker_process_shutdown.connect
def stop_heartbeat(**_: object) -> None:
    for watcher in (_state.watcher, _state.canary_watcher):
        if watcher:
            watcher.stop()
    if _state.heartbeat:
        _state.heartbeat.stop()
    worker_metrics.process_stopping()


@celery_app.task(name=TASK_PREDICT, acks_late=True, reject_on_worker_lost=True)
def predict(message: dict) -> None:
    if _state.runner is None:
        raise RuntimeError("model not loaded in this process")
    stats = _state.runner.run(message)
    worker_metrics.record_batch(stats, message, settings.model_batch_size)


@worker_init.connect
def setup_metrics(**_: object) -> None:
    """In the Celery main process, before the pool forks: the shared metrics directory."""
    worker_metrics.setup()


@worker_ready.connect
def serve_metrics(**_: object) -> None:
    """In the Celery main process once the pool has forked: serve all its processes' metrics."""
    worker_metrics.serve(settings.worker_metrics_port)
