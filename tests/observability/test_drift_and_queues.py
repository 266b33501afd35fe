"""Drift turns on with a skewed class mix; queue depth and age come from Redis.

Its own Redis, API, worker and Prometheus: the class mix must be exactly what this test sends.
The API runs without a model registry (its container image has none to read): the reference
comes from the workers, through Prometheus.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from common.contract import QUEUE_BULK, TASK_PREDICT, JobSpec, PredictMessage, encode_images
from common.queueing import make_celery
from harness.processes import (
    RedisServer,
    free_port,
    start_api,
    start_worker,
    wait_for_workers,
    wait_until,
)
from tests.observability.prometheus import PrometheusServer, require_prometheus
from tests.observability.support import (
    OUTPUT,
    chromium,
    close,
    json_images,
    predict,
    render,
    samples,
    value,
)

pytestmark = pytest.mark.integration


def _send_old_message(redis_url: str, age_s: float) -> None:
    """A real task message enqueued `age_s` ago (one blank image: no class is predicted)."""
    message = PredictMessage(
        jobs=[JobSpec(uuid.uuid4().hex, meta={"blank": [0]})],
        images=encode_images(np.zeros((1, 28, 28), dtype=np.uint8)),
        enqueued_at=time.time() - age_s,
    )
    celery = make_celery("obs-test", redis_url)
    celery.send_task(TASK_PREDICT, args=[message.to_dict()], queue=QUEUE_BULK)


def _drift(client) -> dict | None:
    windows = client.get("/v1/slo").json()["windows"]
    return windows and windows["5m"]["drift"]


def test_queue_age_then_drift_state_changes_with_a_skewed_mix(mnist_test, tmp_path):
    images, labels = mnist_test
    require_prometheus()
    redis_server = RedisServer()
    port, metrics_port = free_port(), free_port()
    prometheus = PrometheusServer(port, metrics_port)
    no_models = tmp_path / "no-models"
    no_models.mkdir()
    api = start_api(
        redis_server.url,
        port,
        name="obs-drift-api",
        DIGITS_DRIFT_MIN_SAMPLES="200",
        DIGITS_PROMETHEUS_URL=prometheus.url,
        DIGITS_MODELS_DIR=str(no_models),
    )
    worker = None
    try:
        import httpx

        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        # No worker yet: a message 30 s old waits in the bulk queue.
        _send_old_message(redis_server.url, 30)
        queues = client.get("/v1/slo").json()["queues"]
        assert queues["digits.bulk"]["depth"] == 1
        assert queues["digits.bulk"]["oldest_age_s"] >= 30
        assert queues["digits.interactive"] == {"depth": 0, "images": 0, "oldest_age_s": 0.0}
        scrape = samples(f"http://127.0.0.1:{port}/metrics")
        assert value(scrape, "digits_queue_depth", queue="digits.bulk") == 1
        assert value(scrape, "digits_queue_oldest_age_seconds", queue="digits.bulk") >= 30
        assert _drift(client)["state"] == "insufficient_data"

        worker = start_worker(
            redis_server.url, name="obs-drift-worker", DIGITS_WORKER_METRICS_PORT=str(metrics_port)
        )
        wait_for_workers(redis_server.url)
        wait_until(prometheus.targets_up, 30, "Prometheus scraping the API and the worker")
        wait_until(prometheus.aged, 60, "25 s of scrapes", interval=1)
        wait_until(
            lambda: client.get("/v1/slo").json()["queues"]["digits.bulk"]["depth"] == 0,
            30,
            "the old message to be consumed",
        )

        # The API admits sync work once it has seen the worker: probe with a blank image,
        # which is predicted as "none" and so stays out of the class mix.
        blank = json_images([np.zeros((28, 28), dtype=np.uint8).tolist()])
        wait_until(lambda: predict(client, blank).status_code == 200, 30, "sync admission")

        # A balanced mix: 30 test images of every digit.
        balanced = np.concatenate([images[labels == d][:30] for d in range(10)])
        for chunk in (balanced[:150], balanced[150:]):
            assert predict(client, json_images(chunk.tolist())).status_code == 200
        stable = wait_until(
            lambda: (d := _drift(client)) and close(d["samples"], 300) and d,
            15,
            "300 predictions counted",
        )
        assert stable["state"] == "stable" and not stable["drifting"], stable
        assert stable["psi"] < 0.05
        assert len(stable["reference"]) == 10  # exported by the worker, not read by the API

        # Then only ones: 600 more, two thirds of the window.
        ones = images[labels == 1][:600]
        for start in range(0, 600, 200):
            response = predict(client, json_images(ones[start : start + 200].tolist()))
            assert response.status_code == 200
        drifting = wait_until(
            lambda: (d := _drift(client)) and close(d["samples"], 900) and d,
            15,
            "900 predictions counted",
        )
        assert drifting["state"] == "drifting" and drifting["drifting"], drifting
        assert drifting["psi"] > drifting["threshold"]
        assert drifting["observed"][1] > 0.6
        if chromium():  # the picture of a drifting model, for people (not asserted on)
            render(
                f"http://127.0.0.1:{port}/dashboard", f"--screenshot={OUTPUT}/dashboard-drift.png"
            )
    finally:
        if worker:
            worker.stop()
        api.stop()
        prometheus.stop()
        redis_server.stop()
