"""A private stack per test: these tests kill, stop and flood things."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest

from harness.processes import (
    ManagedProcess,
    RedisServer,
    free_port,
    start_api,
    start_worker,
    wait_for_workers,
)
from training.data import load_mnist

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    redis: RedisServer
    api_port: int
    api: ManagedProcess | None = None
    workers: list[ManagedProcess] = field(default_factory=list)
    api_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def http(self, timeout: float = 10) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def start_api(self, **env: str) -> ManagedProcess:
        self.api_env = {**self.api_env, **env}
        self.api = start_api(
            self.redis.url, self.api_port, name=f"api-{self.api_port}", **self.api_env
        )
        return self.api

    def add_worker(self, wait: bool = True, **env: str) -> ManagedProcess:
        name = f"worker-{self.api_port}-{len(self.workers)}"
        process = start_worker(self.redis.url, name=name, **env)
        self.workers.append(process)
        if wait:
            wait_for_workers(self.redis.url, count=1)
        return process

    def stop(self) -> None:
        for process in self.workers:
            process.stop()
        if self.api:
            self.api.stop()
        self.redis.stop()


@pytest.fixture()
def make_stack() -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(*redis_args: str, **api_env: str) -> Stack:
        stack = Stack(RedisServer(None, *redis_args), free_port())
        stacks.append(stack)
        stack.start_api(**api_env)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_mnist()
    return data.x_test[:512], data.y_test[:512]


def batch_body(images: np.ndarray) -> dict:
    return {"images": [image.tolist() for image in images]}
