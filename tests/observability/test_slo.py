"""`/v1/slo` sums the per-minute counts of every API and worker process exactly."""

from __future__ import annotations

import pytest

from tests.harness import wait_until
from tests.observability.support import DIGIT7_PNG, json_images, predict, quiescent

pytestmark = pytest.mark.integration


def _window(client, name: str = "5m") -> dict:
    return client.get("/v1/slo").json()["windows"][name]


def test_slo_windows_match_the_traffic(stack):
    with stack.client() as client:
        before = quiescent(stack)["windows"]
        for _ in range(4):
            assert predict(client, json_images([DIGIT7_PNG] * 3)).status_code == 200
        assert predict(client, b"{broken").status_code == 400

        def settled():
            window = _window(client)
            grown = window["requests"] - before["5m"]["requests"]
            return grown == 5 and window["predictions"] - before["5m"]["predictions"] == 12

        wait_until(settled, 10, "5 requests and 12 predictions in the 5 min window")
        body = client.get("/v1/slo").json()

    for name in ("5m", "1h", "24h"):  # a fresh Redis: every window saw the same traffic
        window, old = body["windows"][name], before[name]
        assert window["requests"] - old["requests"] == 5
        assert window["status_classes"]["4xx"] - old["status_classes"]["4xx"] == 1
        assert window["errors_5xx"] == 0 and window["availability"] == 1.0
        assert window["error_budget_remaining"] == 1.0
        digit7 = window["predictions_by_digit"]["7"] - old["predictions_by_digit"]["7"]
        assert digit7 == 12
        assert 0 < window["latency_s"]["p50"] <= window["latency_s"]["p99"] <= 2.0
        assert window["latency_within_objective"] == 1.0
        assert window["review_rate"] == 0.0
        assert window["mean_batch_size"] >= 1
    five = body["windows"]["5m"]
    assert five["throughput_rps"] == pytest.approx(five["requests"] / 300, abs=1e-3)
    assert sum(five["confidence_histogram"]["counts"]) == five["predictions"]
    assert five["drift"]["state"] == "insufficient_data"  # below the minimum sample count
    assert body["model"]["name"] == "mnist_cnn"
    assert set(body["queues"]) == {"digits.interactive", "digits.bulk"}
    assert len(body["workers"]) == 2
    assert sum(worker["batches"] for worker in body["workers"]) >= 4
    assert body["objectives"]["availability"] == 0.9999
    assert body["timeline"][-1]["requests"] >= 1


def test_slo_endpoint_is_not_counted_as_traffic(stack):
    with stack.client() as client:
        before = _window(client)["requests"]
        for _ in range(3):
            assert client.get("/v1/slo").status_code == 200
        assert client.get("/dashboard").status_code == 200
        # A request that is counted, to know the flush of the ones above has happened too.
        assert predict(client, DIGIT7_PNG, "image/png").status_code == 200
        wait_until(lambda: _window(client)["requests"] >= before + 1, 10, "the predict counted")
        assert _window(client)["requests"] == before + 1
