"""Shared fixtures: one throw-away Redis, one real worker and one real API per test session."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from harness.processes import (
    ManagedProcess,
    RedisServer,
    free_port,
    start_api,
    start_worker,
    wait_for_workers,
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def worker(redis_server: RedisServer) -> Iterator[ManagedProcess]:
    process = start_worker(redis_server.url, name="session-worker", DIGITS_WORKER_CONCURRENCY="2")
    try:
        wait_for_workers(redis_server.url, count=2)
    except TimeoutError:
        pytest.fail(f"worker did not become ready:\n{process.log_tail()}")
    yield process
    process.stop()


@pytest.fixture(scope="session")
def api_url(redis_server: RedisServer, worker: ManagedProcess) -> Iterator[str]:
    port = free_port()
    process = start_api(redis_server.url, port, name="session-api")
    yield f"http://127.0.0.1:{port}"
    process.stop()


@pytest.fixture()
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=10) as http:
        yield http
