"""/readyz follows the workers: 503 with none, 200 once one has loaded the model."""

from __future__ import annotations

import httpx
import pytest

from tests.harness import RedisServer, free_port, start_api, start_worker, wait_until

pytestmark = pytest.mark.integration


def test_readyz_follows_workers():
    redis_server = RedisServer()  # its own: the session's workers must not count here
    port = free_port()
    api = start_api(redis_server.url, port, name="readyz-api")
    worker = None
    try:
        url = f"http://127.0.0.1:{port}"
        response = httpx.get(f"{url}/readyz")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "no_workers"
        assert httpx.get(f"{url}/livez").status_code == 200

        worker = start_worker(redis_server.url, name="readyz-worker")
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 60, "ready")
        assert httpx.get(f"{url}/readyz").json()["workers"] >= 1

        worker.stop()
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 503, 15, "not ready")
    finally:
        if worker:
            worker.stop()
        api.stop()
        redis_server.stop()
