"""The pieces of api/serving/shedding.py that need no server: which routes are shed, the
kernel's own count of how long a request's bytes have waited unread, and the test for a
standing queue that decides how long a request may have waited."""

from __future__ import annotations

import socket
import time

import orjson
import pytest

from api.errors import ServiceUnavailable
from api.serving.shedding import (
    DeadlineHttpProtocol,
    StandingQueue,
    refusal_response,
    shed_route,
    waited_s,
)


@pytest.mark.parametrize(
    ("target", "route"),
    [
        (b"/v1/predict", "/v1/predict"),
        (b"/v1/predict?wait=1.5", "/v1/predict"),
        (b"/v1/postcodes?length=5", "/v1/postcodes"),
        (b"/v2/models/mnist_cnn/infer", "/v2/models/{name}/infer"),
        (b"/v2/models/mnist_cnn/versions/3/infer", "/v2/models/{name}/versions/{version}/infer"),
        (b"/v1/jobs", None),  # bulk: its own, slower limits
        (b"/v1/jobs/abc", None),
        (b"/metrics", None),
        (b"/v2/models/mnist_cnn", None),
    ],
)
def test_only_the_synchronous_routes_are_shed(target, route):
    assert shed_route(target) == route


def test_the_prebuilt_refusal_is_the_service_s_error_shape():
    refusal = ServiceUnavailable("overloaded", "expected queue wait 3.10s", retry_after_s=4)
    v1 = refusal_response(refusal, v2=False)
    head, _, body = v1.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert f"content-length: {len(body)}".encode() in head
    assert b"retry-after: 4\r\n" in head
    assert orjson.loads(body) == refusal.body()
    v2 = refusal_response(refusal, v2=True).partition(b"\r\n\r\n")[2]
    assert orjson.loads(v2) == {"error": "expected queue wait 3.10s"}  # the OIP's shape


def test_the_kernel_says_how_long_a_request_has_waited_unread():
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with client, accepted:
            client.sendall(b"POST /v1/predict HTTP/1.1\r\n\r\n")
            time.sleep(0.3)  # the bytes age in the receive buffer: what is measured
            assert 0.25 <= waited_s(accepted) < 5
            accepted.recv(100)
            client.sendall(b"more")
            time.sleep(0.01)
            assert waited_s(accepted) < 0.25  # counts from the newest bytes


def test_no_socket_means_no_wait_rather_than_an_error():
    assert waited_s(None) == 0.0


def _read(queue: StandingQueue, waits_ms: list[float], every_ms: float, start: float = 0.0):
    """Observe one request every `every_ms` with these waits; the time after the last."""
    now = start
    for wait in waits_ms:
        queue.observe(wait / 1000, now)
        now += every_ms / 1000
    return now - every_ms / 1000


def test_a_burst_that_drains_within_the_interval_is_not_a_standing_queue():
    queue = StandingQueue(target_s=0.02, interval_s=0.1)
    end = _read(queue, [300] * 90, every_ms=1)  # 90 requests that all waited, read in 90 ms
    assert not queue.standing(end)


def test_a_queue_whose_every_request_waited_for_an_interval_stands():
    queue = StandingQueue(target_s=0.02, interval_s=0.1)
    end = _read(queue, [30] * 12, every_ms=10)  # 110 ms of requests that all waited 30 ms
    assert queue.standing(end)


def test_one_request_read_in_time_ends_it():
    queue = StandingQueue(target_s=0.02, interval_s=0.1)
    end = _read(queue, [30] * 12 + [5], every_ms=10)
    assert not queue.standing(end)
    end = _read(queue, [30] * 10, every_ms=10, start=end + 0.01)  # 90 ms late again: not yet
    assert not queue.standing(end)


def test_a_quiet_interval_ends_it():
    queue = StandingQueue(target_s=0.02, interval_s=0.1)
    end = _read(queue, [30] * 12, every_ms=10)
    assert queue.standing(end + 0.05)
    assert not queue.standing(end + 0.1)  # nothing read for an interval: nothing waiting
    queue.observe(0.03, end + 0.5)  # the next late request after the quiet: a new start
    assert not queue.standing(end + 0.5)


@pytest.fixture()
def protocol_limits():
    """The protocol's class-wide limits, configured as create_app does, restored after."""
    saved = {name: getattr(DeadlineHttpProtocol, name) for name in _LIMITS}
    DeadlineHttpProtocol.configure(0.25, 0.02, on_shed=None)
    yield DeadlineHttpProtocol
    for name, value in saved.items():
        setattr(DeadlineHttpProtocol, name, value)


_LIMITS = ("shed_after_s", "shed_standing_after_s", "first_requests", "requests", "on_shed")


def test_a_request_may_wait_the_burst_limit_unless_new_connections_queue(protocol_limits):
    assert protocol_limits.wait_limit(now=0.0) == 0.25
    end = _read(protocol_limits.first_requests, [40] * 12, every_ms=10)
    assert protocol_limits.wait_limit(now=end) == 0.02
    assert protocol_limits.wait_limit(now=end + 0.2) == 0.25  # no new connection since


def test_kept_alive_requests_that_queue_get_the_short_limit_too(protocol_limits):
    end = _read(protocol_limits.requests, [40] * 12, every_ms=10)
    assert protocol_limits.wait_limit(now=end) == 0.02


def test_the_standing_limit_is_never_longer_than_the_burst_limit(protocol_limits):
    protocol_limits.configure(0.1, 0.5, on_shed=None)
    assert protocol_limits.shed_standing_after_s == 0.1
    assert protocol_limits.first_requests.target_s == 0.1
