"""Finds accepted jobs that lost their worker or their message and sends them again, or fails them.

Celery redelivers a message whose pool process died (`reject_on_worker_lost`), but not
one held by a worker whose main process was killed: Redis keeps it unacknowledged until
the visibility timeout (minutes). Nor one popped off the queue by a worker that lost its
network as BRPOP returned: that message is nowhere. So every API process runs this loop; a
short Redis lock lets one of them sweep at a time. A job is lost when it is

- `running` on a worker whose heartbeat stopped, or `running` past the task's hard time
  limit even on a live worker (its result write gave up, or its message was acknowledged
  without a result);
- `queued` but held (`held_by`, written by `workers.broker` as the worker took the message)
  by a worker whose heartbeat stopped, or held past the time limit without starting;
- `queued`, not held, and well older than the newest job already taken from its queue
  (`QUEUE_TAKEN_KEY`; queues are FIFO, so its message was popped and lost), seen so in two
  sweeps in a row; or older than `queued_grace_s` with its queue empty.

It is sent again up to `max_attempts` times, then failed explicitly (`worker_lost` or
`timed_out`): never pending forever. A re-sent job's old message is removed from kombu's
`unacked` hash, so it does not come back after the visibility timeout to run twice. The
pending set is read a page at a time, resuming where the last sweep stopped, so a lost job
behind any backlog is reached within a few sweeps.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import cast

import numpy as np
import orjson
from redis.asyncio import Redis

from api.periodic import Periodic
from api.serving.dispatch import Dispatcher
from api.serving.jobs import NewJob
from common.contract import (
    IMAGE_BYTES,
    IMAGE_SIDE,
    KEY_PREFIX,
    QUEUE_BULK,
    QUEUE_TAKEN_KEY,
    WORKER_HEARTBEAT_KEY,
    WORKER_HOST_KEY,
    JobKind,
    JobSpec,
    JobStatus,
    job_key,
)
from common.jobstate import FINISH, PENDING_KEY, REQUEUE, finish_args
from common.queueing import QUEUES, UNACKED_INDEX_KEY, UNACKED_KEY

log = logging.getLogger(__name__)
LOCK_KEY = f"{KEY_PREFIX}:sweeper-lock"
_STATE = (
    "status",
    "started_by",
    "started_at",
    "attempts",
    "queue",
    "held_by",
    "held_at",
    "held_tag",
)
_PAYLOAD = ("kind", "n", "meta", "input")

WORKER_LOST = "worker_lost"
TIMED_OUT = "timed_out"
MESSAGE_LOST = "message_lost"
"""Internal: popped and never held. Acted on only when seen in two sweeps in a row (the
worker writes `held_by` a moment after its BRPOP returns); fails as `worker_lost`."""
_MESSAGES = {
    WORKER_LOST: "its worker was lost",
    TIMED_OUT: "running past the time limit",
    MESSAGE_LOST: "its message was taken off the queue and lost",
}


@dataclass(frozen=True)
class SweepPolicy:
    interval_s: float = 2.0
    queued_grace_s: float = 10.0
    """A `queued` job this old while its queue is empty was lost with its message."""
    running_grace_s: float = 3.0
    """A `running` or held job is only judged after this, so a fresh batch is never doubted."""
    worker_stale_s: float = 5.0
    running_limit_s: float = 28.0
    """A job `running` (or held, unstarted) this long is lost even if its worker is alive:
    past the hard time limit (DIGITS_TASK_TIME_LIMIT_S + running_grace_s) no worker can still be
    working on it, nor still be about to start it."""
    taken_margin_s: float = 3.0
    """A `queued` job counts as passed once a job queued this much later was taken from its
    queue: more than the broker's socket timeout (2 s), so a slow publish is not mistaken
    for a lost message."""
    max_attempts: int = 3
    page_size: int = 500
    pages_per_sweep: int = 4


@dataclass(frozen=True)
class World:
    """What one sweep knows besides the jobs themselves."""

    now: float
    live: set[str]
    """Pool processes with a recent heartbeat (`started_by` names)."""
    hosts: set[str]
    """Worker main processes with a live pool process (`held_by` names)."""
    taken: dict[str, float]
    empty: dict[str, bool]


class Sweeper:
    def __init__(
        self, client: Redis, dispatcher: Dispatcher, policy: SweepPolicy, owner: str
    ) -> None:
        self._redis = client
        self._dispatcher = dispatcher
        self._policy = policy
        self._owner = owner
        self._finish = client.register_script(FINISH)
        self._requeue = client.register_script(REQUEUE)
        self._offset = 0
        self._suspects: dict[str, float] = {}
        """Jobs judged MESSAGE_LOST -> when first so; acted on from the next sweep on."""
        self.periodic = Periodic("sweeper", policy.interval_s, self.sweep_once)

    async def sweep_once(self) -> int:
        """One pass over up to `pages_per_sweep` pages; returns how many jobs were re-sent or
        failed."""
        lock_ms = int(self._policy.interval_s * 1000 * 2)
        if not await self._redis.set(LOCK_KEY, self._owner, nx=True, px=lock_ms):
            return 0
        world = await self._world()
        handled = 0
        for _ in range(self._policy.pages_per_sweep):
            page = await self._redis.zrange(
                PENDING_KEY,
                self._offset,
                self._offset + self._policy.page_size - 1,
                withscores=True,
            )
            self._offset = 0 if len(page) < self._policy.page_size else self._offset + len(page)
            handled += await self._judge_page(page, world)
            if self._offset == 0:
                break
        forget_before = world.now - 60 * self._policy.interval_s  # finished, or long re-judged
        self._suspects = {i: t for i, t in self._suspects.items() if t > forget_before}
        return handled

    async def _world(self) -> World:
        now = time.time()
        since = now - self._policy.worker_stale_s
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(WORKER_HEARTBEAT_KEY, since, "+inf")
            pipe.zrangebyscore(WORKER_HOST_KEY, since, "+inf")
            pipe.hgetall(QUEUE_TAKEN_KEY)
            for queue in QUEUES:
                pipe.llen(queue)
            live, hosts, taken, *lengths = await pipe.execute()
        return World(
            now,
            {name.decode() for name in live},
            {name.decode() for name in hosts},
            {q.decode(): float(t) for q, t in taken.items()},
            {q: n == 0 for q, n in zip(QUEUES, lengths, strict=True)},
        )

    async def _judge_page(self, page: list, world: World) -> int:
        oldest = world.now - min(self._policy.queued_grace_s, self._policy.running_grace_s)
        candidates = [(i.decode(), score) for i, score in page if score <= oldest]
        if not candidates:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id, _ in candidates:
                pipe.hmget(job_key(job_id), *_STATE)
            rows = await pipe.execute()
        handled = 0
        for (job_id, queued_at), row in zip(candidates, rows, strict=True):
            record = {
                k: (v.decode() if v is not None else None) for k, v in zip(_STATE, row, strict=True)
            }
            if record["status"] not in (JobStatus.QUEUED, JobStatus.RUNNING):
                await self._redis.zrem(PENDING_KEY, job_id)  # expired or already final
                continue
            reason = why_lost(record, queued_at, world, self._policy)
            first_suspected = (
                self._suspects.setdefault(job_id, world.now) if reason == MESSAGE_LOST else None
            )
            if first_suspected == world.now:
                continue  # lost only if still so at a later sweep
            self._suspects.pop(job_id, None)
            if reason:
                await self._recover(job_id, record, reason)
                handled += 1
        return handled

    async def _recover(self, job_id: str, record: dict, reason: str) -> None:
        attempts = int(record["attempts"] or 1)
        kind, n, meta, data = cast(
            "list[bytes | None]", await self._redis.hmget(job_key(job_id), *_PAYLOAD)
        )
        if (
            attempts >= self._policy.max_attempts
            or kind is None
            or n is None
            or data is None
            or len(data) != int(n) * IMAGE_BYTES
        ):
            await self._fail(job_id, (kind or b"digits").decode(), attempts, reason)
            return
        if record["held_tag"]:
            await self._forget_message(record["held_tag"])
        requeued = await self._requeue(
            keys=[job_key(job_id), PENDING_KEY],
            args=[record["status"], attempts + 1, f"{time.time():.6f}", job_id],
        )
        if not requeued:
            return  # it moved on by itself (started, or answered) since it was judged
        spec = JobSpec(job_id, JobKind(kind.decode()), int(n), orjson.loads(meta or b"{}"))
        images = np.frombuffer(data, np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
        queue = record["queue"] or QUEUE_BULK
        # NOTE: no reply channel: the original request has answered 202 or gone by now.
        await self._dispatcher.send(queue, [NewJob(spec, images, queue)], reply_to=None)
        log.warning(
            "job re-sent: %s",
            _MESSAGES[reason],
            extra={"job_id": job_id, "attempt": attempts + 1, "reason": reason},
        )

    async def _forget_message(self, tag: str) -> None:
        """Drop a lost holder's copy from kombu's `unacked`: re-sent now, it must not also be
        restored after the visibility timeout and run twice."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(UNACKED_INDEX_KEY, tag)
            pipe.hdel(UNACKED_KEY, tag)
            await pipe.execute()

    async def _fail(self, job_id: str, kind: str, attempts: int, reason: str) -> None:
        code = TIMED_OUT if reason == TIMED_OUT else WORKER_LOST
        what = "run exceeded the time limit" if code == TIMED_OUT else "worker was lost"
        body = {
            "id": job_id,
            "status": str(JobStatus.FAILED),
            "kind": kind,
            "error": {
                "code": code,
                "message": f"the job's {what} {attempts} times; giving up",
            },
        }
        args = finish_args("", time.time(), [(job_id, str(JobStatus.FAILED), orjson.dumps(body))])
        await self._finish(keys=[job_key(job_id)], args=args)
        log.error(
            "job failed after %d attempts", attempts, extra={"job_id": job_id, "reason": reason}
        )


def why_lost(record: dict, queued_at: float, world: World, policy: SweepPolicy) -> str | None:
    """Why this unfinished job is lost, or None while it may still be answered.

    `record`: the job's `_STATE` fields (str or None); `queued_at`: its `PENDING_KEY` score.
    """
    now = world.now
    if record["status"] == JobStatus.RUNNING:
        if now - queued_at <= policy.running_grace_s:
            return None
        if record["started_by"] not in world.live:
            return WORKER_LOST
        # NOTE: `started_at` is the worker's clock; hosts are assumed NTP-synchronised.
        started_at = float(record["started_at"] or now)
        return TIMED_OUT if now - started_at > policy.running_limit_s else None
    held_at = float(record["held_at"] or 0.0)
    if record["held_by"] and held_at >= queued_at:  # held since it was last queued
        held_for = now - held_at
        if held_for <= policy.running_grace_s:
            return None
        if record["held_by"] not in world.hosts or held_for > policy.running_limit_s:
            return WORKER_LOST
        return None
    queue = record["queue"] or QUEUE_BULK
    if world.taken.get(queue, 0.0) > queued_at + policy.taken_margin_s:
        return MESSAGE_LOST
    if now - queued_at > policy.queued_grace_s and world.empty.get(queue, False):
        return WORKER_LOST
    return None
