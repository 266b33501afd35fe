"""A result subscription that went silent is noticed and replaced (issue 18, across hosts).

When the Redis host vanishes without a FIN or RST, an idle subscription's socket never
errors: the API waited in `listen()` forever, and every sync request was answered only at its
2 s deadline (by reading the job then) while `/readyz` said 200. Here a TCP proxy between the
API and Redis freezes every connection it carries (bytes stop, nothing is closed) while new
connections still go through: what a failover to a new Redis host behind the same address
looks like to the API. The worker talks to Redis directly.
"""

from __future__ import annotations

import select
import socket
import threading
import time

import pytest

from harness.processes import free_port, wait_until
from tests.reliability.conftest import batch_body

pytestmark = pytest.mark.integration


class FreezingProxy:
    """Forwards 127.0.0.1:port to a target; `freeze()` silences the connections open now."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = ("127.0.0.1", target_port)
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._frozen: set[int] = set()
        self._generation = 0
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        """Existing connections stop carrying bytes, in both directions, and stay open."""
        self._frozen.add(self._generation)
        self._generation += 1

    def stop(self) -> None:
        self._stopped.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            generation = self._generation
            threading.Thread(
                target=self._pump, args=(client, upstream, generation), daemon=True
            ).start()

    def _pump(self, client: socket.socket, upstream: socket.socket, generation: int) -> None:
        pair = {client: upstream, upstream: client}
        with client, upstream:
            while not self._stopped.is_set():
                if generation in self._frozen:
                    time.sleep(0.05)  # a black hole: read nothing, send nothing, close nothing
                    continue
                readable, _, _ = select.select(list(pair), [], [], 0.05)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)


def test_a_silent_subscription_is_replaced_and_sync_answers_come_fast_again(make_stack, digits):
    stack = make_stack()
    stack.add_worker()
    proxy = FreezingProxy(stack.redis.port)
    try:
        stack.api.stop()
        stack.start_api(DIGITS_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0")
        one = batch_body(digits[0][:1])
        with stack.http() as http:
            wait_until(lambda: http.get("/readyz").status_code == 200, 30, "readiness")
            assert http.post("/v1/predict", json=one).status_code == 200
            proxy.freeze()

            def answered_fast() -> bool:
                started = time.monotonic()
                response = http.post("/v1/predict", json=one, timeout=5)
                return response.status_code == 200 and time.monotonic() - started < 1.0

            # STALE_AFTER_S (3 s) to notice, then a new subscription through the proxy.
            wait_until(answered_fast, 15, "a sync answer in < 1 s over a new subscription")
            assert http.get("/readyz").status_code == 200
        log = stack.api.log_path.read_text(errors="replace")
        assert "no word from Redis" in log
    finally:
        proxy.stop()
