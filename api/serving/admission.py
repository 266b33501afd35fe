"""Admission control: refuse sync work at once when it could not finish before its deadline.

Answering late is worse than answering "not now": a sorting machine can retry or route
the letter to a human, but a 200 after 2 s is useless. The expected wait of a new
interactive request is (messages queued ahead of it) x (seconds a worker takes per
message) / (live workers); the inputs are read from Redis by a background task every
`refresh_s`, so a request pays no extra round trip.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.errors import ServiceUnavailable
from api.periodic import Periodic
from common.contract import QUEUE_BULK, QUEUE_INTERACTIVE, WORKER_HEARTBEAT_KEY, WORKER_PACE_KEY


@dataclass
class Backlog:
    """What admission knows of the queues and the workers, as last read from Redis."""

    interactive: int = 0
    bulk: int = 0
    workers: int = 0
    seconds_per_message: float = 0.01
    read_at: float = 0.0

    def expected_wait_s(self) -> float:
        if self.workers < 1:
            return math.inf
        return (self.interactive + 1) * self.seconds_per_message / self.workers


class LoopLag:
    """How late this process's event loop runs: the backlog no queue length shows.

    When the API process itself is saturated, requests wait in the kernel's accept queue
    and in the loop before any handler runs; a timer that should fire every `interval_s`
    fires late by about that wait. `lag_s` is the time-weighted median over the last
    `window_s`: a sustained backlog delays the ticks that fill most of the window, while one
    long step delays one tick only.
    """

    def __init__(self, interval_s: float = 0.05, window_s: float = 1.0) -> None:
        self._interval_s = interval_s
        self._window_s = window_s
        self._ticks: list[tuple[float, float, float]] = []  # (ended at, lasted, lag)
        self.lag_s = 0.0
        self.periodic = Periodic("loop-lag", 0.0, self._measure)

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(self._interval_s)
        ended = loop.time()
        lag = max(0.0, ended - started - self._interval_s)
        self._ticks = [t for t in self._ticks if t[0] > ended - self._window_s]
        self._ticks.append((ended, ended - started, lag))
        self.lag_s = _weighted_median([(lag, lasted) for _, lasted, lag in self._ticks])


def _weighted_median(values: list[tuple[float, float]]) -> float:
    """The value below which half of the total weight lies; (value, weight) pairs."""
    half, seen = sum(weight for _, weight in values) / 2, 0.0
    for value, weight in sorted(values):
        seen += weight
        if seen >= half:
            return value
    return 0.0


class Admission:
    def __init__(
        self,
        client: Redis,
        *,
        sync_budget_s: float,
        max_bulk_messages: int,
        worker_stale_s: float,
        max_loop_lag_s: float = 0.5,
        refresh_s: float = 0.1,
    ) -> None:
        self._redis = client
        self._sync_budget_s = sync_budget_s
        self._max_bulk_messages = max_bulk_messages
        self._worker_stale_s = worker_stale_s
        self._refresh_s = refresh_s
        self._max_loop_lag_s = max_loop_lag_s
        self.lag = LoopLag()
        self.state = Backlog()
        self.periodic = Periodic("admission", refresh_s, self.refresh)

    async def refresh(self) -> Backlog:
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.llen(QUEUE_INTERACTIVE)
            pipe.llen(QUEUE_BULK)
            pipe.zrangebyscore(WORKER_HEARTBEAT_KEY, now - self._worker_stale_s, "+inf")
            pipe.hgetall(WORKER_PACE_KEY)
            interactive, bulk, live, stats = await pipe.execute()
        live_names = {name.decode() for name in live}
        per_message = [float(v) for k, v in stats.items() if k.decode() in live_names]
        self.state = Backlog(
            interactive=interactive,
            bulk=bulk,
            workers=len(live_names),
            seconds_per_message=max(per_message) if per_message else self.state.seconds_per_message,
            read_at=now,
        )
        return self.state

    async def check_sync(self) -> None:
        """Raise 503 when a new sync request could not be answered within its budget.

        Two backlogs count: this process's own (event-loop lag) and the interactive queue in
        Redis. A queue refusal is only given on a fresh view: a state older than
        `refresh_s / 2` is read again first, so a worker that just started is never refused for.
        """
        lagging = self._lag_refusal()
        if lagging is not None:
            raise lagging
        refusal = self._refusal(self.state)
        if refusal is None:
            return
        # NOTE: "no workers" is always read again: a view up to refresh_s/2 old could still
        # say 0 just after the first worker's heartbeat (seen under load in CI).
        if time.time() - self.state.read_at > self._refresh_s / 2 or refusal.code == "no_workers":
            try:
                await self.refresh()
            except (RedisError, OSError):
                return  # Redis trouble: let the enqueue itself decide (fast 503)
        refusal = self._refusal(self.state)
        if refusal is not None:
            raise refusal

    def refusal_now(self) -> ServiceUnavailable | None:
        """The refusal due on what is already known, without a Redis round trip: this
        process's loop lag, or a queue wait beyond the budget on a view at most two refreshes
        old. Cheap enough for the HTTP protocol to ask of every sync request before it becomes
        ASGI work (api/serving/shedding.py); "no workers" is left to `check_sync`, which reads
        again.
        """
        lagging = self._lag_refusal()
        if lagging is not None:
            return lagging
        state = self.state
        if state.workers < 1 or time.time() - state.read_at > 2 * self._refresh_s:
            return None
        return self._refusal(state)

    def _lag_refusal(self) -> ServiceUnavailable | None:
        if self.lag.lag_s <= self._max_loop_lag_s:
            return None
        return ServiceUnavailable(
            "overloaded", f"this API process runs {self.lag.lag_s:.2f}s behind; retry"
        )

    def _refusal(self, state: Backlog) -> ServiceUnavailable | None:
        if time.time() - state.read_at > 2.0:
            return None  # stale view (Redis trouble): let the enqueue itself decide
        if state.workers < 1:
            return ServiceUnavailable(
                "no_workers", "no inference worker is running", retry_after_s=5
            )
        wait = state.expected_wait_s()
        if wait > self._sync_budget_s:
            return ServiceUnavailable(
                "overloaded",
                f"expected queue wait {wait:.2f}s exceeds the {self._sync_budget_s:.2f}s budget",
                retry_after_s=max(1, math.ceil(wait)),
            )
        return None

    def check_bulk(self) -> None:
        if self.state.bulk >= self._max_bulk_messages:
            raise ServiceUnavailable(
                "queue_full", f"{self.state.bulk} batches are queued; retry later", retry_after_s=10
            )
