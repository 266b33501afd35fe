"""`/metrics` of the API and of the workers count exactly the traffic a test sends."""

from __future__ import annotations

import re

import pytest

from harness.processes import wait_until
from tests.observability.support import (
    DIGIT7_PNG,
    json_images,
    predict,
    quiescent,
    samples,
    total,
    value,
)

pytestmark = pytest.mark.integration

PREDICT = {"route": "/v1/predict", "method": "POST"}


def test_api_counts_requests_by_route_template_and_status_class(stack):
    url = f"{stack.api_url}/metrics"
    quiescent(stack)
    before = samples(url)
    with stack.client() as client:
        for _ in range(6):  # 200, or 202 if a starved machine misses the 2 s: both 2xx
            assert predict(client, DIGIT7_PNG, "image/png").status_code in (200, 202)
        assert predict(client, b"not json").status_code == 400
        missing = client.get("/v1/jobs/0123456789abcdef0123456789abcdef")
        assert missing.status_code == 404

    def counted():
        now = samples(url)
        grown = lambda name, **labels: total(now, name, **labels) - total(before, name, **labels)  # noqa: E731
        done = (
            grown("digits_http_requests_total", **PREDICT, status_class="2xx") == 6
            and grown("digits_http_requests_total", **PREDICT, status_class="4xx") == 1
            and grown("digits_http_requests_total", route="/v1/jobs/{job_id}", status_class="4xx")
            == 1
        )
        return done and now

    # Two API processes: each adds its counts to the shared files within a second.
    now = wait_until(counted, 20, "request counts on /metrics")
    count = "digits_http_request_duration_seconds_count"
    assert total(now, count, route="/v1/predict") - total(before, count, route="/v1/predict") == 7
    within = "digits_http_request_duration_seconds_bucket"
    assert value(now, within, route="/v1/predict", le="2.0") >= 7
    labels = {dict(ls).get("route") for (name, ls) in now if name.startswith("digits_http")}
    assert not any(re.search(r"[0-9a-f]{32}", route or "") for route in labels), labels
    assert ("digits_http_requests_in_flight", frozenset()) in now
    for queue in ("digits.interactive", "digits.bulk"):
        assert value(now, "digits_queue_depth", queue=queue) == 0
        assert value(now, "digits_queue_oldest_age_seconds", queue=queue) == 0


def test_rejections_are_counted_by_reason(stack):
    url = f"{stack.api_url}/metrics"
    reason = {"reason": "invalid_json"}
    quiescent(stack)
    before = value(samples(url), "digits_rejections_total", **reason)
    with stack.client() as client:
        assert predict(client, b"{broken").status_code == 400
    wait_until(
        lambda: value(samples(url), "digits_rejections_total", **reason) == before + 1,
        10,
        "digits_rejections_total{reason=invalid_json} + 1",
    )


def test_worker_metrics_show_batches_predictions_and_model(stack):
    url = f"{stack.worker_metrics_url}/metrics"
    quiescent(stack)
    before = samples(url)
    with stack.client() as client:
        response = predict(client, json_images([DIGIT7_PNG] * 5))
    assert response.status_code == 200, response.text
    assert [p["digit"] for p in response.json()["predictions"]] == [7] * 5

    def grown(name: str, now: dict, **labels: str) -> float:
        return total(now, name, **labels) - total(before, name, **labels)

    now = wait_until(
        lambda: (
            (now := samples(url)) and grown("digits_predictions_total", now, digit="7") == 5 and now
        ),
        10,
        "5 more predictions of 7 on the worker port",
    )
    assert grown("digits_batch_size_count", now) >= 1
    assert grown("digits_batch_size_sum", now) >= 5
    assert grown("digits_confidence_count", now) == 5
    assert grown("digits_job_seconds_count", now) >= 1
    assert grown("digits_model_seconds_count", now) >= 1
    assert grown("digits_queue_wait_seconds_count", now) >= 1
    assert value(now, "digits_worker_up") == 2  # both pool processes, summed
    assert total(now, "digits_model_info", name="mnist_cnn") == 1  # one version served
    digits = {dict(ls)["digit"] for (name, ls) in now if name == "digits_predictions_total"}
    assert digits <= {*map(str, range(10)), "none"}


def test_sync_request_that_falls_back_to_a_job_is_counted(stack):
    url = f"{stack.api_url}/metrics"
    quiescent(stack)
    before = value(samples(url), "digits_sync_fallback_total")
    with stack.client() as client:
        window = lambda: client.get("/v1/slo").json()["windows"]["5m"]  # noqa: E731
        predictions = quiescent(stack)["windows"]["5m"]["predictions"]
        response = client.post(
            "/v1/predict?wait=0", content=DIGIT7_PNG, headers={"Content-Type": "image/png"}
        )
        assert response.status_code == 202, response.text
        wait_until(
            lambda: value(samples(url), "digits_sync_fallback_total") == before + 1,
            10,
            "digits_sync_fallback_total + 1",
        )
        wait_until(lambda: window()["sync_fallbacks"] >= 1, 10, "the fallback in /v1/slo")
        # The job still completes; wait for its prediction too, so later tests count exactly.
        wait_until(
            lambda: window()["predictions"] == predictions + 1, 15, "the 202 job's prediction"
        )
