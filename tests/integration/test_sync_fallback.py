"""A sync request not answered within `wait` becomes a 202 job that completes later."""

from __future__ import annotations

import signal
import time

import pytest

from harness.processes import wait_for_job
from tests.integration.conftest import png_bytes

pytestmark = pytest.mark.integration


def test_sync_timeout_answers_202_and_the_job_then_completes(client, worker, mnist_test):
    images, labels = mnist_test
    worker.signal(signal.SIGSTOP)  # a stalled worker: alive, but nothing gets done
    try:
        started = time.monotonic()
        response = client.post(
            "/v1/predict?wait=0.5",
            content=png_bytes(images[4]),
            headers={"Content-Type": "image/png"},
        )
        elapsed = time.monotonic() - started
    finally:
        worker.signal(signal.SIGCONT)
    assert response.status_code == 202, response.text
    assert 0.5 <= elapsed < 1.0  # never later than the deadline plus a small margin
    job = response.json()
    assert job["status"] == "queued" and response.headers["Location"] == job["status_url"]
    done = wait_for_job(client, job["id"], 30)
    assert done["status"] == "done"
    assert done["predictions"][0]["digit"] == labels[4]


def test_wait_zero_always_answers_202(client, mnist_test):
    images, labels = mnist_test
    response = client.post("/v1/predict?wait=0", json={"images": [images[5].tolist()]})
    assert response.status_code == 202, response.text
    done = wait_for_job(client, response.json()["id"], 30)
    assert done["status"] == "done"
    assert done["predictions"][0]["digit"] == labels[5]
