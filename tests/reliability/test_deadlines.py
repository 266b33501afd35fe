"""A sync request's deadline counts from when its bytes reached the machine, not from when the
API process got around to reading them (issue 18 item 3; api/serving/shedding.py and
api/serving/deadline.py).

The API process is frozen (SIGSTOP) with a request sitting unread in its socket: the wait no
handler sees, made on purpose. A real worker and the real model answer whatever is admitted.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import orjson
import pytest

from harness.processes import process_table, wait_until
from tests.reliability.conftest import batch_body

pytestmark = pytest.mark.integration


def _raw_request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    """Status, headers and body of one HTTP/1.1 response (Content-Length framed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def _uvicorn_processes(api_pid: int) -> list[int]:
    """The API's process and its children: every process that could read the socket."""
    return [pid for pid, parent, _ in process_table() if pid == api_pid or parent == api_pid]


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        os.kill(pid, sig)


def _send_while_frozen(stack, path: str, body: bytes, frozen_s: float):
    """Send one request to a frozen API, thaw it after `frozen_s`; (status, headers, body,
    seconds from send to the end of the answer)."""
    pids = _uvicorn_processes(stack.api.pid)
    with socket.create_connection(("127.0.0.1", stack.api_port), timeout=10) as sock:
        _signal_all(pids, signal.SIGSTOP)
        try:
            started = time.monotonic()
            sock.sendall(_raw_request(path, body))
            time.sleep(frozen_s)  # the request ages, unread, in the socket (the point here)
        finally:
            _signal_all(pids, signal.SIGCONT)
        status, headers, payload = _read_response(sock)
        return status, headers, payload, time.monotonic() - started


def _send_throttled(stack, body: bytes, cycles: int, stopped_s: float, per_cycle: int):
    """Requests that always wait: each cycle, `per_cycle` new connections send a sync request
    while the API's processes are stopped for `stopped_s`, then the processes run for 15 ms.
    [(cycle, status, payload)] once every request is answered."""
    pids = _uvicorn_processes(stack.api.pid)
    sent: list[tuple[int, socket.socket]] = []
    try:
        for cycle in range(cycles):
            _signal_all(pids, signal.SIGSTOP)
            for _ in range(per_cycle):  # the kernel completes the handshake of a stopped server
                sock = socket.create_connection(("127.0.0.1", stack.api_port), timeout=10)
                sock.sendall(_raw_request("/v1/predict", body))
                sent.append((cycle, sock))
            time.sleep(stopped_s)  # the requests age, unread (the point here)
            _signal_all(pids, signal.SIGCONT)
            time.sleep(0.015)
    finally:
        _signal_all(pids, signal.SIGCONT)
    answers = []
    for cycle, sock in sent:
        with sock:
            status, _, payload = _read_response(sock)
            answers.append((cycle, status, payload))
    return answers


@pytest.fixture()
def stack(make_stack):
    stack = make_stack(DIGITS_SHED_AFTER_S="0.3")
    stack.add_worker()
    with stack.http() as http:  # warm: the model is loaded, the connection pools are open
        wait_until(lambda: http.get("/readyz").status_code == 200, 30, "readiness")
    return stack


def test_a_sync_request_that_waited_unread_is_shed_at_once_with_a_json_503(stack, digits):
    body = orjson.dumps(batch_body(digits[0][:1]))
    status, headers, payload, _ = _send_while_frozen(stack, "/v1/predict", body, 0.6)
    assert status == 503
    error = orjson.loads(payload)["error"]
    assert error["code"] == "overloaded" and "waited" in error["message"]
    assert headers["retry-after"] == "1"
    assert headers["connection"] == "close", "a process that fell behind closes, see _keeps_alive"
    with stack.http() as http:
        metrics = http.get("/metrics").text
        assert 'route="/v1/predict",status_class="5xx"' in metrics.replace('method="POST",', ""), (
            "the shed request is counted as a 5xx of its route"
        )
        one = batch_body(digits[0][:1])  # served again once the loop caught up (loop lag)
        wait_until(lambda: http.post("/v1/predict", json=one).status_code == 200, 5, "a 200")


def test_bulk_submissions_are_not_shed_by_the_sync_rule(stack, digits):
    body = orjson.dumps(batch_body(digits[0][:1]))
    status, _, payload, _ = _send_while_frozen(stack, "/v1/jobs", body, 0.6)
    assert status == 202, payload


def test_the_deadline_counts_from_arrival_so_a_late_read_is_not_answered_late(make_stack, digits):
    """Shedding off (DIGITS_SHED_AFTER_S=60): the request is read 1.9 s after it arrived, so only
    ~0.1 s of its 2 s is left, which no batch turns around in with the worker frozen."""
    stack = make_stack(DIGITS_SHED_AFTER_S="60")
    worker = stack.add_worker()
    with stack.http() as http:
        wait_until(lambda: http.get("/readyz").status_code == 200, 30, "readiness")
    worker.signal(signal.SIGSTOP)
    try:
        body = orjson.dumps(batch_body(digits[0][:1]))
        status, _, payload, elapsed = _send_while_frozen(stack, "/v1/predict", body, 1.9)
    finally:
        worker.signal(signal.SIGCONT)
    assert elapsed < 2.0 + 0.05, f"answered {elapsed:.3f}s after it was sent"
    assert status in (202, 503), payload  # the job goes on (202) or was refused: never late


def test_requests_read_in_time_are_served_as_usual(stack, digits):
    body = orjson.dumps(batch_body(digits[0][:1]))
    status, _, payload, elapsed = _send_while_frozen(stack, "/v1/predict", body, 0.1)
    assert status == 200, payload
    assert orjson.loads(payload)["predictions"][0]["digit"] == int(digits[1][0])
    assert elapsed < 2.0


def test_a_short_wait_of_the_client_s_own_ends_in_a_202_not_a_refusal(stack, digits):
    """`wait=0.01` is the client's choice, not time lost in the server (schemathesis sent it)."""
    with stack.http() as http:
        response = http.post("/v1/predict?wait=0.01", json=batch_body(digits[0][:1]))
    assert response.status_code in (200, 202), response.text


def test_a_queue_refusal_is_given_by_the_protocol_and_keeps_the_connection(make_stack, digits):
    """Under overload a refusal must cost far less than the work it avoids: admission's own
    answer on its cached view ("expected queue wait ... exceeds the budget") is written by
    the HTTP protocol before the request becomes ASGI work, and a keep-alive client keeps
    its connection (no new handshake per refused request)."""
    stack = make_stack(DIGITS_SYNC_BUDGET_S="0.2")
    worker = stack.add_worker()
    body = batch_body(digits[0][:1])
    one = orjson.dumps(body)
    with stack.http() as http:
        wait_until(lambda: http.get("/readyz").status_code == 200, 30, "readiness")
        worker.signal(signal.SIGSTOP)  # the interactive queue builds up
        try:
            wait_until(
                lambda: http.post("/v1/predict?wait=0", json=body).status_code == 503,
                20,
                "admission to refuse",
            )
            with socket.create_connection(("127.0.0.1", stack.api_port), timeout=10) as sock:
                for _ in range(3):  # one connection, one refusal after another
                    sock.sendall(_raw_request("/v1/predict", one))
                    status, headers, payload = _read_response(sock)
                    assert status == 503, payload
                    error = orjson.loads(payload)["error"]
                    assert error["code"] == "overloaded", error
                    assert "expected queue wait" in error["message"], error
                    assert "connection" not in headers
                    # uvicorn adds `server` to every answer of the app: this one is not
                    assert "server" not in headers, "refused by the app, not by the protocol"
            with socket.create_connection(("127.0.0.1", stack.api_port), timeout=10) as sock:
                head = _raw_request("/v1/predict", one).replace(
                    b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n", 1
                )
                sock.sendall(head.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")  # no body yet
                status, headers, _ = _read_response(sock)
                assert status == 503 and headers["connection"] == "close", (
                    "a client waiting for 100-continue never sends the body: close"
                )
        finally:
            worker.signal(signal.SIGCONT)
        wait_until(lambda: http.post("/v1/predict", json=body).status_code == 200, 30, "recovery")


def test_a_standing_queue_is_refused_at_its_target_while_a_burst_is_served(make_stack, digits):
    """DIGITS_SHED_AFTER_S=60 takes the burst limit out of the way, so only the standing-queue
    rule (api/serving/shedding.StandingQueue, target 50 ms here) can refuse: a burst that
    waited 0.3 s but is read at once is served; requests that keep waiting ≥ 70 ms, cycle
    after cycle, are refused once that has lasted the 100 ms interval, and each says why."""
    stack = make_stack(DIGITS_SHED_AFTER_S="60", DIGITS_SHED_STANDING_AFTER_S="0.05")
    stack.add_worker()
    with stack.http() as http:
        wait_until(lambda: http.get("/readyz").status_code == 200, 30, "readiness")
    body = orjson.dumps(batch_body(digits[0][:1]))

    burst = _send_throttled(stack, body, cycles=1, stopped_s=0.3, per_cycle=12)
    assert [status for _, status, _ in burst] == [200] * 12, burst

    answers = _send_throttled(stack, body, cycles=15, stopped_s=0.07, per_cycle=4)
    assert {status for _, status, _ in answers} <= {200, 503}, answers
    refused = [orjson.loads(payload)["error"] for _, status, payload in answers if status == 503]
    for error in refused:
        assert error["code"] == "overloaded" and "waited" in error["message"], error
    late = [status for cycle, status, _ in answers if cycle >= 3]
    assert late.count(503) >= len(late) // 2, f"{late.count(503)} of {len(late)} refused"

    with stack.http() as http:  # a quiet interval ends it: served again
        one = batch_body(digits[0][:1])
        wait_until(lambda: http.post("/v1/predict", json=one).status_code == 200, 5, "a 200")
