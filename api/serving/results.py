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


PING_INTERVAL_S = 1.0
"""How often an idle subscription pings Redis (a PING on a subscribed connection is answered
as a message, so a silent one is known to be dead rather than just quiet)."""
STALE_AFTER_S = 3.0
"""A subscription that heard nothing, not even a pong, for this long is dead: when the Redis
host vanished without a FIN/RST, `listen()` waited forever (issue 18: sync requests answered
only at their 2 s deadline for >= 130 s while /readyz said 200). It is dropped and resubscribed,
and until then `healthy` is False: /readyz says 503 and sync requests are refused at once."""


STOP_TIMEOUT_S = 2.0


class SubscriptionStale(RedisError):
    """No message and no pong within STALE_AFTER_S."""


class ResultListener:
    def __init__(self, client: Redis, reply_to: str) -> None:
        self._redis = client
        self.reply_to = reply_to
        self._waiting: dict[str, asyncio.Future] = {}
        self._task: asyncio.Task | None = None
        self._subscribed = asyncio.Event()
        self._heard_at = 0.0
        self._stopping = False

    @property
    def healthy(self) -> bool:
        """Subscribed, and Redis answered on the subscription within STALE_AFTER_S."""
        now = asyncio.get_running_loop().time()
        return self._subscribed.is_set() and now - self._heard_at < STALE_AFTER_S

    async def start(self, timeout_s: float = 5.0) -> None:
        self._task = asyncio.create_task(self._run(), name="result-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout_s)

    async def stop(self) -> None:
        """Cancel the listener and wait for it, boundedly: a cancellation that lands inside
        redis-py's read can surface as a connection error, which the loop would retry (an
        API process then hung in shutdown); `_stopping` ends the loop either way."""
        self._stopping = True
        if self._task:
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=STOP_TIMEOUT_S)
            if not done:
                log.warning("result listener did not stop within %.0fs", STOP_TIMEOUT_S)

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
        """Listen forever; after a lost or silent connection, resubscribe (waiters fall back
        to reading the job at their deadline)."""
        delay = 0.1
        while not self._stopping:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(result_channel(self.reply_to))
                self._heard_at = asyncio.get_running_loop().time()
                self._subscribed.set()
                delay = 0.1
                await self._listen(pubsub)
            except (RedisError, OSError) as exc:
                self._subscribed.clear()
                if self._stopping:
                    return
                log.warning("result subscription lost: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)

    async def _listen(self, pubsub) -> None:
        loop = asyncio.get_running_loop()
        pinged_at = loop.time()
        while not self._stopping:
            message = await pubsub.get_message(timeout=PING_INTERVAL_S / 2)
            now = loop.time()
            if message is not None:
                self._heard_at = now
                if message.get("type") == "message":
                    try:
                        self._deliver(message["data"])
                    except (ValueError, KeyError, TypeError):
                        log.exception("malformed result message dropped")
            if now - self._heard_at > STALE_AFTER_S:
                raise SubscriptionStale(f"no word from Redis for {now - self._heard_at:.1f}s")
            if now - pinged_at >= PING_INTERVAL_S:
                pinged_at = now
                await asyncio.wait_for(pubsub.ping(), PING_INTERVAL_S)
