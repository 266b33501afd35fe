"""Overload is refused fast; interactive work goes ahead of bulk; retries are idempotent."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from harness.processes import wait_for_job, wait_until
from tests.reliability.conftest import batch_body

pytestmark = pytest.mark.integration


def test_a_backlog_beyond_the_deadline_is_refused_with_503(make_stack, digits):
    stack = make_stack(DIGITS_SYNC_BUDGET_S="0.2")
    worker = stack.add_worker()
    one = batch_body(digits[0][:1])
    with stack.http() as http:
        assert http.post("/v1/predict", json=one).status_code == 200
        worker.signal(signal.SIGSTOP)  # the backlog builds up
        try:
            for _ in range(200):
                if http.post("/v1/predict?wait=0", json=one).status_code == 503:
                    break
            response = wait_until(
                lambda: (r := http.post("/v1/predict", json=one)).status_code == 503 and r,
                10,
                "admission control to refuse",
            )
            started = time.monotonic()
            refused = http.post("/v1/predict", json=one)
            assert time.monotonic() - started < 0.5
            assert refused.status_code == 503
            assert response.json()["error"]["code"] == "overloaded"
            assert int(response.headers["Retry-After"]) >= 1
        finally:
            worker.signal(signal.SIGCONT)
        wait_until(lambda: http.post("/v1/predict", json=one).status_code == 200, 30, "recovery")


def test_sync_requests_overtake_a_20000_image_bulk_upload(client, digits):
    body = batch_body(digits[0][:250])
    with ThreadPoolExecutor(4) as pool:
        bulk = list(pool.map(lambda _: client.post("/v1/jobs", json=body), range(80)))
    assert all(r.status_code == 202 for r in bulk)  # 20,000 images queued
    latencies = []
    for index in range(20):
        started = time.monotonic()
        response = client.post("/v1/predict", json=batch_body(digits[0][index : index + 1]))
        latencies.append(time.monotonic() - started)
        assert response.status_code == 200, response.text
    assert max(latencies) < 2.0, latencies
    assert wait_for_job(client, bulk[-1].json()["id"], 60)["status"] == "done"


def test_idempotency_key_returns_the_same_job(client, digits):
    body = batch_body(digits[0][:2])
    key = {"Idempotency-Key": f"truck-17-{time.time_ns()}"}
    first = client.post("/v1/jobs", json=body, headers=key)
    again = client.post("/v1/jobs", json=body, headers=key)
    other = client.post("/v1/jobs", json=body)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]


def test_api_keys_guard_v1_but_not_health(make_stack, digits):
    stack = make_stack(DIGITS_API_KEYS="k-one,k-two")
    stack.add_worker()
    body = batch_body(digits[0][:1])
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        refused = http.post("/v1/predict", json=body)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        assert (
            http.post("/v1/predict", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
        )
        bearer = {"Authorization": "Bearer k-one"}
        assert http.post("/v1/predict", json=body, headers=bearer).status_code == 200
        assert (
            http.post("/v1/predict", json=body, headers={"X-API-Key": "k-two"}).status_code == 200
        )
        assert http.get("/livez").status_code == 200
        assert http.get("/readyz").status_code == 200
