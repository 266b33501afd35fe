"""The pieces of api/serving/shedding.py that need no server: which routes are shed, and the
kernel's own count of how long a request's bytes have waited unread."""

from __future__ import annotations

import socket
import time

import orjson
import pytest

from api.errors import ServiceUnavailable
from api.serving.shedding import refusal_response, shed_route, waited_s


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
