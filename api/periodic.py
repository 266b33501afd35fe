"""A background step repeated every few seconds for the life of the API process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class Periodic:
    """Runs `step()` every `interval_s`; a failing step is logged and tried again next time."""

    def __init__(self, name: str, interval_s: float, step: Callable[[], Awaitable[object]]) -> None:
        self._name = name
        self._interval_s = interval_s
        self._step = step
        self._task: asyncio.Task | None = None
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Cancel and wait, boundedly. A cancellation that lands inside a redis-py call can
        come out as a Redis error, which the loop would log and go on from (an API process
        then never finished its shutdown: seen in CI); `_stopping` ends the loop anyway."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
            if not done:
                log.warning("%s did not stop within %.0fs", self._name, timeout_s)

    async def _run(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._interval_s)
            try:
                await self._step()
            except (RedisError, OSError) as exc:
                log.debug("%s skipped: %s", self._name, exc)
            except Exception:
                log.exception("%s failed", self._name)


class Loops:
    """The API process's background loops: started together, stopped in reverse order, each
    within its bounded stop. One owner, so `create_app` cannot start one and forget to stop it."""

    def __init__(self, *loops: Periodic) -> None:
        self._loops = loops

    def start(self) -> None:
        for loop in self._loops:
            loop.start()

    async def stop(self) -> None:
        for loop in reversed(self._loops):
            await loop.stop()
