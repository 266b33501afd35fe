"""One stack of our own for the observability tests: the session fixtures share one Redis with
other tests, and these tests count exactly. Two API processes (multiprocess metrics) and two
pool processes, so every number is checked across processes; a Prometheus of its own scrapes
them every second with the repo's rules, and the API reads it (`/v1/slo`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from harness.processes import (
    RedisServer,
    free_port,
    start_api,
    start_worker,
    wait_for_workers,
    wait_until,
)
from tests.observability.prometheus import PrometheusServer, require_prometheus
from tests.observability.support import OUTPUT, Stack, fresh_dir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="package")
def stack() -> Iterator[Stack]:
    require_prometheus()
    redis_server = RedisServer()
    metrics_port, port = free_port(), free_port()
    prometheus = PrometheusServer(port, metrics_port)
    worker = start_worker(
        redis_server.url,
        name="obs-worker",
        DIGITS_WORKER_CONCURRENCY="2",
        DIGITS_WORKER_METRICS_PORT=str(metrics_port),
    )
    multiproc = fresh_dir(OUTPUT / "prometheus" / str(port))
    api = start_api(
        redis_server.url,
        port,
        name="obs-api",
        DIGITS_API_WORKERS="2",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
        DIGITS_PROMETHEUS_URL=prometheus.url,
        DIGITS_LOG_LEVEL="INFO",
    )
    running = Stack(
        redis_server,
        api,
        worker,
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{metrics_port}",
        prometheus,
    )
    try:
        wait_for_workers(redis_server.url, count=2)
        wait_until(prometheus.targets_up, 30, "Prometheus scraping the API and the workers")
        # NOTE: increase() extrapolates a young series by (interval / its age): 25 s of
        # history first, so that a test's counts are within a few per cent (support.close).
        wait_until(prometheus.aged, 60, "25 s of scrapes", interval=1)
    except TimeoutError:
        running.stop()
        pytest.fail(f"worker did not become ready:\n{worker.log_tail()}")
    yield running
    running.stop()


@pytest.fixture(scope="package")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    from training.data import load_mnist

    data = load_mnist()
    return data.x_test, data.y_test
