"""A sync request not answered within `wait` becomes a 202 job that completes later."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.harness import RedisServer, free_port, start_api, start_worker, wait_until
from tests.integration.conftest import png_bytes

pytestmark = pytest.mark.integration


def test_sync_timeout_answers_202_and_the_job_then_completes(mnist_test):
    images, labels = mnist_test
    redis_server = RedisServer()  # no worker yet: nothing can answer in time
    port = free_port()
    api = start_api(redis_server.url, port, name="fallback-api")
    worker = None
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        started = time.monotonic()
        response = client.post(
            "/v1/predict?wait=0.5",
            content=png_bytes(images[4]),
            headers={"Content-Type": "image/png"},
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 202, response.text
        assert 0.5 <= elapsed < 1.0  # never later than the deadline plus a small margin
        job = response.json()
        assert job["status"] == "queued" and response.headers["Location"] == job["status_url"]

        worker = start_worker(redis_server.url, name="fallback-worker")
        done = wait_until(
            lambda: (body := client.get(job["status_url"]).json())["status"] == "done" and body,
            60,
            "the queued job to complete",
        )
        assert done["predictions"][0]["digit"] == labels[4]
    finally:
        if worker:
            worker.stop()
        api.stop()
        redis_server.stop()
