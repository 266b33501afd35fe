"""The service under test: a throw-away stack on free loopback ports, or a running one (`--url`).

Never the machine's Redis: the stack's redis-server gets its own free port (harness/processes.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from api.config import ApiSettings
from harness.processes import (
    ManagedProcess,
    RedisServer,
    free_port,
    start_api,
    start_worker,
    wait_for_workers,
)
from workers.config import WorkerSettings


def _default(settings: type[ApiSettings | WorkerSettings], name: str):
    """The service's own default for a setting: the bench measures what `make run` runs."""
    return settings.model_fields[name].default


@dataclass(frozen=True)
class StackConfig:
    api_workers: int = _default(ApiSettings, "api_workers")
    worker_concurrency: int = _default(WorkerSettings, "worker_concurrency")
    batch_delay_ms: float = _default(ApiSettings, "max_batch_delay_ms")
    env: tuple[tuple[str, str], ...] = ()
    """More settings for the worker and the API, e.g. (("DIGITS_MAX_PENDING_REVIEWS", "1000"),)."""

    def label(self) -> str:
        return (
            f"DIGITS_API_WORKERS={self.api_workers} "
            f"DIGITS_WORKER_CONCURRENCY={self.worker_concurrency} "
            f"DIGITS_MAX_BATCH_DELAY_MS={self.batch_delay_ms:g}"
        )


@dataclass
class Stack:
    url: str
    config: StackConfig | None = None
    pids: dict[str, int] = field(default_factory=dict)
    """Component name -> root pid (children are counted with it), for CPU accounting."""
    _processes: list[ManagedProcess] = field(default_factory=list)
    _redis: RedisServer | None = None

    @classmethod
    def start(cls, config: StackConfig) -> Stack:
        redis = RedisServer()
        stack = cls(url="", config=config, _redis=redis)
        stack.pids["redis"] = redis.process.pid
        try:
            worker = start_worker(
                redis.url,
                name="bench-worker",
                DIGITS_WORKER_CONCURRENCY=str(config.worker_concurrency),
                DIGITS_HEARTBEAT_INTERVAL_S="1",
                **dict(config.env),
            )
            stack._processes.append(worker)
            stack.pids["workers"] = worker.pid
            wait_for_workers(redis.url, count=config.worker_concurrency, timeout=120)
            port = free_port()
            api = start_api(
                redis.url,
                port,
                name="bench-api",
                DIGITS_API_WORKERS=str(config.api_workers),
                DIGITS_MAX_BATCH_DELAY_MS=str(config.batch_delay_ms),
                **dict(config.env),
            )
            stack._processes.append(api)
            stack.pids["api"] = api.pid
            stack.url = f"http://127.0.0.1:{port}"
        except BaseException:
            stack.stop()
            raise
        return stack

    @classmethod
    def attach(cls, url: str) -> Stack:
        return cls(url=url.rstrip("/"))

    @property
    def port(self) -> int:
        """The API's port, from its URL."""
        return int(self.url.rsplit(":", 1)[1])

    def celery_messages(self) -> int | None:
        """Messages published to the queues so far (kombu's Redis transport LPUSHes each)."""
        if self._redis is None:
            return None
        stats = self._redis.client().info("commandstats")
        return int(stats.get("cmdstat_lpush", {}).get("calls", 0))

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.stop()
        if self._redis is not None:
            self._redis.stop()
