"""Coalesces concurrent requests of this API process into few Celery messages.

A Celery message costs ~2 ms of client CPU and ~2 ms of worker CPU however small it is,
while the model needs ~0.05 ms per image: so requests arriving within
`max_batch_delay_ms` of each other travel together (up to `max_batch_size` images) and
the worker runs them in one model call. Docs: docs/DESIGN.md, "Batching".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from redis.exceptions import OutOfMemoryError

from api.errors import ServiceUnavailable
from api.serving.jobs import JobStore, NewJob
from common.contract import QUEUE_INTERACTIVE, JobSpec, PredictMessage, encode_images

log = logging.getLogger(__name__)

UNAVAILABLE_HOLD_S = 0.5
"""After a failed enqueue (Redis unreachable or stalled), new submissions are refused at once
for this long instead of each waiting out its own Redis timeout: the next flush after it
tries Redis again (a circuit breaker; measured in `python -m bench.chaos`, "Redis paused")."""

Sender = Callable[[str, dict], None]
"""(queue, message payload) -> None; publishes one `digits.predict` task. Blocking."""


@dataclass
class _Pending:
    jobs: list[NewJob] = field(default_factory=list)
    accepted: list[asyncio.Future] = field(default_factory=list)
    images: int = 0
    timer: asyncio.TimerHandle | None = None


class Dispatcher:
    def __init__(
        self,
        store: JobStore,
        send: Sender,
        *,
        reply_to: str,
        max_batch_size: int,
        max_batch_delay_s: float,
    ) -> None:
        self._store = store
        self._send = send
        self._reply_to = reply_to
        self._max_batch_size = max_batch_size
        self._max_batch_delay_s = max_batch_delay_s
        self._pending: dict[str, _Pending] = {}
        self._in_flight: set[asyncio.Task] = set()
        self._publishing: dict[str, int] = {}
        self._unavailable_until = 0.0
        # NOTE: one thread: Celery's producer is blocking, and one sender keeps order.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="celery-send")

    async def submit(
        self,
        spec: JobSpec,
        images: np.ndarray,
        queue: str,
        *,
        keep_s: int | None = None,
        stored: bool = False,
    ) -> None:
        """Returns once the job is stored and its message published; 503 if Redis can't take it.

        `keep_s`: how long the job is kept once answered; `stored`: the record exists already.
        """
        loop = asyncio.get_running_loop()
        if self._holding():
            raise _queue_unavailable()
        accepted = loop.create_future()
        pending = self._pending.setdefault(queue, _Pending())
        pending.jobs.append(NewJob(spec, images, queue, keep_s, stored))
        pending.accepted.append(accepted)
        pending.images += len(images)
        if pending.images >= self._max_batch_size:
            self._flush(queue)
        elif pending.timer is None and not self._publishing.get(queue):
            # NOTE: while a message of this queue is being published, newcomers wait for it
            # to finish instead of a timer: under load batches grow by themselves.
            pending.timer = loop.call_later(self._max_batch_delay_s, self._flush, queue)
        await accepted

    def _flush(self, queue: str) -> None:
        pending = self._pending.pop(queue, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        task = asyncio.create_task(self._publish(queue, pending))
        self._in_flight.add(task)
        self._publishing[queue] = self._publishing.get(queue, 0) + 1
        task.add_done_callback(functools.partial(self._published, queue=queue))

    def _published(self, task: asyncio.Task, queue: str) -> None:
        self._in_flight.discard(task)
        self._publishing[queue] -= 1
        if queue in self._pending:
            self._flush(queue)

    async def _publish(self, queue: str, pending: _Pending) -> None:
        if self._holding():
            # They waited for a publish that just failed: refused now, not after another try.
            _settle(pending, _queue_unavailable())
            return
        try:
            await self._store.create(pending.jobs)
            reply_to = self._reply_to if queue == QUEUE_INTERACTIVE else None
            await self.send(queue, pending.jobs, reply_to)
        except Exception as exc:  # every failure to enqueue is a 503, never a lost job
            log.warning(
                "enqueue failed: %s",
                exc,
                extra={"job_ids": [job.spec.id for job in pending.jobs]},
            )
            if isinstance(exc, OutOfMemoryError):
                # Redis at maxmemory (noeviction): accepted work drains, new work waits.
                error = ServiceUnavailable(
                    "store_full", "the job store is full; retry later", retry_after_s=5
                )
            else:
                error = _queue_unavailable()
                self._unavailable_until = asyncio.get_running_loop().time() + UNAVAILABLE_HOLD_S
            _settle(pending, error)
            return
        _settle(pending, None)

    def _holding(self) -> bool:
        """Inside UNAVAILABLE_HOLD_S of a failed enqueue: refuse without trying Redis."""
        return asyncio.get_running_loop().time() < self._unavailable_until

    async def send(self, queue: str, jobs: list[NewJob], reply_to: str | None) -> None:
        """Publish one message for jobs whose records already exist (also used for retries)."""
        message = PredictMessage(
            jobs=[job.spec for job in jobs],
            images=encode_images(np.concatenate([job.images for job in jobs])),
            enqueued_at=time.time(),
            reply_to=reply_to,
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._send, queue, message.to_dict())

    async def close(self) -> None:
        """Send what is pending and wait for messages being published (graceful shutdown)."""
        for queue in list(self._pending):
            self._flush(queue)
        if self._in_flight:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._executor.shutdown(wait=True)


def _queue_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("queue_unavailable", "the job queue is unavailable; retry")


def _settle(pending: _Pending, error: Exception | None) -> None:
    """Every request of a batch learns its outcome: accepted (None) or the error."""
    for future in pending.accepted:
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
