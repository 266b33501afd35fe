"""/readyz means "this replica can accept work" (Redis answers, its result subscription is
alive), not "a worker is up": during a worker outage every replica would otherwise leave the
load balancer although bulk jobs are still accepted (issue 18). `?workers=1` also asks for a
live worker, for scripts that want the whole service (`make run`'s banner)."""

from __future__ import annotations

import signal

import httpx
import pytest

from harness.processes import RedisServer, free_port, start_api, start_worker, wait_until

pytestmark = pytest.mark.integration


def test_readyz_says_whether_this_replica_takes_work_and_whether_sync_can_be_answered():
    redis_server = RedisServer()  # its own: the session's workers must not count here
    port = free_port()
    api = start_api(redis_server.url, port, name="readyz-api")
    worker = None
    try:
        url = f"http://127.0.0.1:{port}"
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200, ready.text  # no worker, yet it takes bulk work
        assert ready.json() == {"status": "ready", "workers": 0, "sync": False}
        whole = httpx.get(f"{url}/readyz", params={"workers": 1})
        assert whole.status_code == 503 and whole.json()["error"]["code"] == "no_workers"
        assert httpx.post(f"{url}/v1/jobs", json={"images": [[[0] * 28] * 28]}).status_code == 202

        worker = start_worker(redis_server.url, name="readyz-worker")
        wait_until(lambda: httpx.get(f"{url}/readyz?workers=1").status_code == 200, 60, "a worker")
        assert httpx.get(f"{url}/readyz").json()["sync"] is True

        worker.stop()
        wait_until(lambda: httpx.get(f"{url}/readyz").json()["sync"] is False, 15, "no worker")
        assert httpx.get(f"{url}/readyz").status_code == 200

        redis_server.process.signal(signal.SIGSTOP)
        try:
            stalled = httpx.get(f"{url}/readyz", timeout=5)
            assert stalled.status_code == 503
            assert stalled.json()["error"]["code"] == "redis_unavailable"
        finally:
            redis_server.process.signal(signal.SIGCONT)
    finally:
        if worker:
            worker.stop()
        api.stop()
        redis_server.stop()
