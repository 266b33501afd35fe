"""Two stacks on one Redis keep apart by namespace (`DIGITS_NAMESPACE`): `make run` on a
shared host joins whatever Redis answers on 6379, so keys and queues must not collide."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from harness.processes import ROOT, RedisServer, free_port, start_api, start_worker, wait_until

pytestmark = pytest.mark.integration

DIGIT = [[0] * 28 for _ in range(10)] + [[0] * 10 + [255] * 8 + [0] * 10 for _ in range(8)]
DIGIT += [[0] * 28 for _ in range(10)]


def ready(url: str) -> dict:
    return httpx.get(f"{url}/readyz", timeout=2).json()


def test_two_namespaces_on_one_redis_do_not_share_work():
    server = RedisServer()
    processes = []
    try:
        alpha_port, beta_port = free_port(), free_port()
        processes.append(start_worker(server.url, name="ns-alpha-worker", DIGITS_NAMESPACE="alpha"))
        processes.append(
            start_api(server.url, alpha_port, name="ns-alpha-api", DIGITS_NAMESPACE="alpha")
        )
        processes.append(
            start_api(server.url, beta_port, name="ns-beta-api", DIGITS_NAMESPACE="beta")
        )
        alpha, beta = f"http://127.0.0.1:{alpha_port}", f"http://127.0.0.1:{beta_port}"
        wait_until(lambda: ready(alpha)["workers"] >= 1, 60, "alpha's worker")
        assert ready(beta)["workers"] == 0  # alpha's worker is not beta's

        body = {"images": [DIGIT]}
        waiting = httpx.post(f"{beta}/v1/jobs", json=body, timeout=10)
        assert waiting.status_code == 202, waiting.text
        answered = httpx.post(f"{alpha}/v1/predict", json=body, timeout=10)
        assert answered.status_code == 200, answered.text
        done = httpx.post(f"{alpha}/v1/jobs", json=body, timeout=10).json()["id"]
        wait_until(
            lambda: httpx.get(f"{alpha}/v1/jobs/{done}").json()["status"] == "done", 30, "alpha"
        )
        # beta's job waits on beta's queue, untouched by alpha's worker; neither sees the other
        job_id = waiting.json()["id"]
        assert httpx.get(f"{beta}/v1/jobs/{job_id}").json()["status"] == "queued"
        assert httpx.get(f"{alpha}/v1/jobs/{job_id}").status_code == 404
        assert httpx.get(f"{beta}/v1/jobs/{done}").status_code == 404
        store = server.client()
        assert store.llen("beta.bulk") == 1 and store.llen("alpha.bulk") == 0
        assert all(k.startswith((b"alpha", b"beta", b"_kombu")) for k in store.keys("*")), sorted(
            store.keys("*")
        )

        processes.append(start_worker(server.url, name="ns-beta-worker", DIGITS_NAMESPACE="beta"))
        wait_until(
            lambda: httpx.get(f"{beta}/v1/jobs/{job_id}").json()["status"] == "done", 60, "beta"
        )
    finally:
        for process in processes:
            process.stop()
        server.stop()


def test_a_bad_namespace_stops_the_process_with_the_rule():
    env = {**os.environ, "DIGITS_NAMESPACE": "Not A Name"}
    result = subprocess.run(
        [sys.executable, "-c", "import common.contract"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "DIGITS_NAMESPACE='Not A Name': use 1-32 lowercase letters" in result.stderr
