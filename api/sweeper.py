"""Finds accepted jobs that lost their worker and sends them again, or fails them.

Celery redelivers a message whose pool process died (`reject_on_worker_lost`), but not
one held by a worker whose main process was killed: Redis keeps it unacknowledged until
the visibility timeout (minutes). So every API process runs this loop; a short Redis lock
lets one of them sweep at a time. A job is lost when it is `running` on a worker whose
heartbeat stopped, `running` for longer than the task's hard time limit even on a live worker
(its result write gave up, or its message was acknowledged without a result), or still
`queued` long after the queues emptied. It is sent again up to `max_attempts` times, then
failed explicitly (`worker_lost` or `timed_out`): never pending forever.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import orjson
from redis.asyncio import Redis

from api.dispatch import Dispatcher
from api.jobs import NewJob
from api.periodic import Periodic
from common.contract import (
    IMAGE_BYTES,
    IMAGE_SIDE,
    QUEUE_BULK,
    QUEUE_INTERACTIVE,
    WORKER_HEARTBEAT_KEY,
    JobKind,
    JobSpec,
    JobStatus,
    job_key,
)
from common.jobstate import FINISH, PENDING_KEY, finish_args

log = logging.getLogger(__name__)
LOCK_KEY = "digits:sweeper-lock"
_FIELDS = ("status", "started_by", "started_at", "attempts", "queue", "kind", "n", "meta", "input")


@dataclass(frozen=True)
class SweepPolicy:
    interval_s: float = 2.0
    queued_grace_s: float = 10.0
    """A `queued` job this old while both queues are empty was lost with its message."""
    running_grace_s: float = 3.0
    """A `running` job is only judged after this, so a fresh batch is never doubted."""
    worker_stale_s: float = 5.0
    running_limit_s: float = 28.0
    """A job `running` this long is lost even if its worker is alive: past the hard time
    limit (TASK_TIME_LIMIT_S + running_grace_s) no worker can still be working on it."""
    max_attempts: int = 3


class Sweeper:
    def __init__(
        self, client: Redis, dispatcher: Dispatcher, policy: SweepPolicy, owner: str
    ) -> None:
        self._redis = client
        self._dispatcher = dispatcher
        self._policy = policy
        self._owner = owner
        self._finish = client.register_script(FINISH)
        self.loop = Periodic("sweeper", policy.interval_s, self.sweep_once)

    async def sweep_once(self) -> int:
        """One pass; returns how many jobs were re-sent or failed."""
        lock_ms = int(self._policy.interval_s * 1000 * 2)
        if not await self._redis.set(LOCK_KEY, self._owner, nx=True, px=lock_ms):
            return 0
        now = time.time()
        oldest = now - min(self._policy.queued_grace_s, self._policy.running_grace_s)
        ids = [i.decode() for i in await self._redis.zrangebyscore(PENDING_KEY, 0, oldest, 0, 500)]
        if not ids:
            return 0
        live = {
            name.decode()
            for name in await self._redis.zrangebyscore(
                WORKER_HEARTBEAT_KEY, now - self._policy.worker_stale_s, "+inf"
            )
        }
        queues_empty = not any(
            [await self._redis.llen(QUEUE_INTERACTIVE), await self._redis.llen(QUEUE_BULK)]
        )
        scores = dict(zip(ids, await self._redis.zmscore(PENDING_KEY, ids), strict=True))
        handled = 0
        for job_id in ids:
            record = dict(
                zip(_FIELDS, await self._redis.hmget(job_key(job_id), *_FIELDS), strict=True)
            )
            status = record["status"].decode() if record["status"] else None
            age = now - (scores[job_id] or now)
            if status is None or status not in (JobStatus.QUEUED, JobStatus.RUNNING):
                await self._redis.zrem(PENDING_KEY, job_id)  # expired or already final
                continue
            reason = self._lost(status, age, record, live, queues_empty, now)
            if reason:
                await self._recover(job_id, record, reason)
                handled += 1
        return handled

    def _lost(
        self, status: str, age: float, record: dict, live: set[str], queues_empty: bool, now: float
    ) -> str | None:
        """Why this unfinished job is lost (the failure code if it is given up), or None."""
        policy = self._policy
        if status == JobStatus.QUEUED:
            return "worker_lost" if age > policy.queued_grace_s and queues_empty else None
        if age <= policy.running_grace_s:
            return None
        if (record["started_by"] or b"").decode() not in live:
            return "worker_lost"
        # NOTE: `started_at` is the worker's clock; hosts are assumed NTP-synchronised.
        started_at = float(record["started_at"] or now)
        return "timed_out" if now - started_at > policy.running_limit_s else None

    async def _recover(self, job_id: str, record: dict, reason: str) -> None:
        attempts = int(record["attempts"] or 1)
        if attempts >= self._policy.max_attempts or record["input"] is None:
            await self._fail(job_id, record, attempts, reason)
            return
        spec = JobSpec(
            job_id,
            JobKind(record["kind"].decode()),
            int(record["n"]),
            orjson.loads(record["meta"] or b"{}"),
        )
        if len(record["input"]) != spec.n * IMAGE_BYTES:
            await self._fail(job_id, record, attempts, reason)
            return
        images = np.frombuffer(record["input"], np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
        queue = (record["queue"] or QUEUE_BULK.encode()).decode()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(job_key(job_id), mapping={"status": "queued", "attempts": attempts + 1})
            pipe.zadd(PENDING_KEY, {job_id: time.time()})
            await pipe.execute()
        # NOTE: no reply channel: the original request has answered 202 or gone by now.
        await self._dispatcher.send(queue, [NewJob(spec, images, queue)], reply_to=None)
        log.warning(
            "job re-sent: %s",
            "its worker was lost" if reason == "worker_lost" else "running past the time limit",
            extra={"job_id": job_id, "attempt": attempts + 1, "reason": reason},
        )

    async def _fail(self, job_id: str, record: dict, attempts: int, reason: str) -> None:
        what = "worker was lost" if reason == "worker_lost" else "run exceeded the time limit"
        body = {
            "id": job_id,
            "status": str(JobStatus.FAILED),
            "kind": (record["kind"] or b"digits").decode(),
            "error": {
                "code": reason,
                "message": f"the job's {what} {attempts} times; giving up",
            },
        }
        args = finish_args("", time.time(), [(job_id, str(JobStatus.FAILED), orjson.dumps(body))])
        await self._finish(keys=[job_key(job_id)], args=args)
        log.error(
            "job failed after %d attempts", attempts, extra={"job_id": job_id, "reason": reason}
        )
