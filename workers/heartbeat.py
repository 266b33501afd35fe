"""Tells the API that a process with a loaded model is alive (what `/readyz` checks)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time

import redis

from common.contract import WORKER_HEARTBEAT_KEY, WORKER_HOST_KEY, WORKER_PACE_KEY
from common.jobstate import ALLOW_OOM

log = logging.getLogger(__name__)

BEAT = (
    ALLOW_OOM
    + """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return redis.call('ZADD', KEYS[2], ARGV[1], ARGV[3])
"""
)
"""allow-oom: a full Redis (noeviction) must not make live workers look dead; the entries
exist already, so the writes cost no memory."""


def process_name(pid: int | None = None) -> str:
    """`<hostname>:<pid>`: how a worker process is named in Redis. A pool process so names
    itself in the heartbeats and `started_by`; the main process, which takes messages off the
    queue (`workers.broker`), in `held_by`. The healthcheck splits it back at the last ':'."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


class Heartbeat:
    def __init__(
        self, client: redis.Redis, name: str, interval_s: float, holder: str | None = None
    ) -> None:
        self._redis = client
        self._beat = client.register_script(BEAT)
        self.name = name
        self.holder = holder or process_name(os.getppid())
        """This pool process's main process: alive while any of its pool processes beats."""
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        keys = [WORKER_HEARTBEAT_KEY, WORKER_HOST_KEY]
        self._beat(keys=keys, args=[f"{time.time():.6f}", self.name, self.holder])

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(redis.RedisError):
            self._redis.zrem(WORKER_HEARTBEAT_KEY, self.name)
            self._redis.hdel(WORKER_PACE_KEY, self.name)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("heartbeat failed: %s", exc)
