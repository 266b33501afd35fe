"""`/v1/slo` reads Prometheus: its windows agree with the traffic sent (5xx during a Redis
outage included) and with Prometheus' own answers; an outage of either source is "unknown",
fast."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from harness.processes import wait_until
from tests.observability.support import (
    DIGIT7_PNG,
    SLI,
    close,
    json_images,
    predict,
    quiescent,
)

pytestmark = pytest.mark.integration


def _grown(after: dict, before: dict, *path: str) -> float:
    for key in path:
        after, before = after[key], before[key]
    return after - before


def test_windows_agree_with_the_traffic_and_with_prometheus(stack):
    prometheus = stack.prometheus
    with stack.client() as client:
        before = quiescent(stack)
        for _ in range(4):
            assert predict(client, json_images([DIGIT7_PNG] * 3)).status_code == 200
        assert predict(client, b"{broken").status_code == 400
        stack.redis.process.signal(signal.SIGSTOP)
        try:
            for _ in range(3):
                assert predict(client, DIGIT7_PNG, "image/png").status_code >= 500

            def unknown() -> dict | None:
                started = time.monotonic()
                during = client.get("/v1/slo")
                elapsed = time.monotonic() - started
                assert during.status_code == 200 and elapsed < 1.0, (during.text, elapsed)
                body = during.json()
                return None if body["sources"]["redis"]["ok"] else body

            # Each API process reuses a report for 1 s: the next one says "unknown".
            outage = wait_until(unknown, 5, "/v1/slo to say Redis is unknown")
        finally:
            stack.redis.process.signal(signal.SIGCONT)
        assert outage["sources"]["redis"]["ok"] is False and outage["sources"]["redis"]["reason"]
        assert outage["queues"] is None and outage["workers"] is None
        assert outage["windows"] is not None  # Prometheus still answers

    after = quiescent(stack)
    after = wait_until(
        lambda: (
            (body := httpx.get(f"{stack.api_url}/v1/slo", timeout=5).json())
            and close(_grown(body, before, "windows", "24h", "requests"), 8)
            and _grown(body, before, "windows", "24h", "errors_5xx") == 3
            and body
        ),
        45,
        "the 24 h window to count the 8 requests",
        interval=1,
    )
    for name in ("5m", "1h", "24h"):  # a fresh stack: every window saw the same traffic
        window, old = after["windows"][name], before["windows"][name]
        assert close(window["requests"] - old["requests"], 8), (name, window)
        assert window["errors_5xx"] - old["errors_5xx"] == 3
        assert window["status_classes"]["4xx"] - old["status_classes"]["4xx"] == 1
        assert close(window["predictions_by_digit"]["7"] - old["predictions_by_digit"]["7"], 12)
        # Never 100 % with 5xx in the window; the ratio is Prometheus' recording rule.
        assert window["availability"] < 1.0
        ratio = prometheus.scalar(
            {"5m": "digits:sli_errors:ratio_rate5m", "1h": "digits:sli_errors:ratio_rate1h"}.get(
                name, "digits:sli_errors:ratio_rate1d"
            ),
            at=after["generated_at"],
        )
        assert window["availability"] == pytest.approx(1 - ratio, abs=1e-6)
        assert window["availability"] == pytest.approx(
            1 - window["errors_5xx"] / window["requests"], abs=0.02
        )
        assert window["burn_rate"] > 1 and window["error_budget_remaining"] < 0
        assert 0 < window["latency_s"]["p50"] <= window["latency_s"]["p99"] <= 2.0
        assert window["latency_within_objective"] == 1.0
        assert window["mean_batch_size"] >= 1
    # The whole history is inside every window: the counts are Prometheus' raw totals.
    raw = prometheus.scalar(f"sum(digits_http_requests_total{{{SLI}}})", at=after["generated_at"])
    assert close(after["windows"]["24h"]["requests"], raw)
    five = after["windows"]["5m"]
    assert five["throughput_rps"] == pytest.approx(five["requests"] / 300, abs=1e-3)
    assert sum(five["confidence_histogram"]["counts"]) == pytest.approx(
        five["predictions"] - five["predictions_by_digit"]["none"], abs=1 + 0.03 * 12
    )
    assert five["drift"]["state"] == "insufficient_data"  # below the minimum sample count
    assert five["drift"]["reference"] and len(five["drift"]["reference"]) == 10
    assert after["model"]["name"] == "mnist_cnn"
    assert after["current"]["worker_processes_up"] == 2
    assert set(after["queues"]) == {"digits.interactive", "digits.bulk"}
    assert len(after["workers"]) == 2
    assert after["reviews"]["pending"] >= 0
    assert after["objectives"]["availability"] == 0.9999
    assert after["objectives"]["latency_s"] == 2
    assert sum(minute["errors_5xx"] for minute in after["timeline"]) >= 3


def test_observability_endpoints_are_not_traffic(stack):
    with stack.client() as client:
        before = quiescent(stack)["windows"]["5m"]["requests"]
        for path in ("/v1/slo", "/v1/slo", "/dashboard", "/metrics", "/livez", "/readyz"):
            assert client.get(path).status_code == 200
        assert client.get("/v2/models/mnist_cnn/ready").status_code == 200
        assert predict(client, DIGIT7_PNG, "image/png").status_code == 200
    assert quiescent(stack)["windows"]["5m"]["requests"] == before + 1


def test_prometheus_down_is_unknown_at_once(stack, monkeypatch):
    """A Prometheus that does not answer: windows unknown (null) with the reason, fast."""
    prometheus = stack.prometheus
    prometheus.process.signal(signal.SIGSTOP)
    try:
        with stack.client() as client:
            wait_until(
                lambda: client.get("/v1/slo").json()["windows"] is None, 5, "the cache to expire"
            )
            started = time.monotonic()
            body = client.get("/v1/slo").json()
            elapsed = time.monotonic() - started
    finally:
        prometheus.process.signal(signal.SIGCONT)
    assert elapsed < 1.0
    assert body["sources"]["prometheus"]["ok"] is False
    assert "Prometheus unavailable" in body["sources"]["prometheus"]["reason"]
    assert body["windows"] is None and body["timeline"] is None and body["current"] is None
    assert body["objectives"]["availability"] is None
    assert body["queues"] is not None  # Redis still answers
