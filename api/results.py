"""Delivers finished jobs to the requests waiting for them in this API process.

One Redis subscription per process (to its own channel) feeds per-job futures; a
request registers its future before the job is sent, so no result can slip past.
Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.contract import result_channel

log = logging.getLogger(__name__)


class ResultListener:
    def __init__(self, client: Redis, reply_to: str) -> None:
        self._redis = client
        self.reply_to = reply_to
        self._waiting: dict[str, asyncio.Future] = {}
        self._task: asyncio.Task | None = None
        self._subscribed = asyncio.Event()

    async def start(self, timeout_s: float = 5.0) -> None:
        self._task = asyncio.create_task(self._run(), name="result-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout_s)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def expect(self, job_id: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = future
        return future

    def forget(self, job_id: str) -> None:
        self._waiting.pop(job_id, None)

    def _deliver(self, data: bytes) -> None:
        for body in orjson.loads(data):
            future = self._waiting.pop(body["id"], None)
            if future is not None and not future.done():
                future.set_result(body)

    async def _run(self) -> None:
        """Listen forever; after a lost connection, resubscribe (waiters fall back to polling)."""
        delay = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(result_channel(self.reply_to))
                self._subscribed.set()
                delay = 0.1
                async for message in pubsub.listen():
                    if message and message.get("type") == "message":
                        try:
                            self._deliver(message["data"])
                        except (ValueError, KeyError, TypeError):
                            log.exception("malformed result message dropped")
            except (RedisError, OSError) as exc:
                self._subscribed.clear()
                log.warning("result subscription lost: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
