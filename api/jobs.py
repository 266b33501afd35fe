"""Job records in Redis: created by the API, completed by the workers (`common.contract`)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
from redis.asyncio import Redis

from common.contract import (
    FINAL_STATUSES,
    KEY_PREFIX,
    WORKER_HEARTBEAT_KEY,
    JobSpec,
    JobStatus,
    job_key,
)
from common.jobstate import PENDING_KEY


@dataclass(frozen=True)
class NewJob:
    spec: JobSpec
    images: np.ndarray
    queue: str


class JobStore:
    def __init__(self, client: Redis, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s

    async def create(self, jobs: Sequence[NewJob]) -> None:
        """One pipeline for every job of a message: status, input (for retries/review), TTL."""
        now = f"{time.time():.6f}"
        async with self._redis.pipeline(transaction=False) as pipe:
            for job in jobs:
                key = job_key(job.spec.id)
                pipe.hset(
                    key,
                    mapping={
                        "status": str(JobStatus.QUEUED),
                        "kind": str(job.spec.kind),
                        "n": job.spec.n,
                        "queue": job.queue,
                        "created_at": now,
                        "meta": orjson.dumps(job.spec.meta),
                        "input": job.images.tobytes(),
                    },
                )
                pipe.expire(key, self._ttl_s)
            pipe.zadd(PENDING_KEY, {job.spec.id: float(now) for job in jobs})
            await pipe.execute()

    async def claim_idempotency_key(self, key: str, job_id: str) -> str | None:
        """Bind `key` to `job_id` unless already bound; returns the job it was bound to before."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        previous = await self._redis.set(
            f"{KEY_PREFIX}:idempotency:{digest}", job_id, nx=True, ex=self._ttl_s, get=True
        )
        return previous.decode() if previous is not None else None

    async def get(self, job_id: str) -> dict | None:
        """The public view of a job, or None when unknown or expired."""
        status, kind, body = await self._redis.hmget(job_key(job_id), "status", "kind", "body")
        if status is None:
            return None
        status = status.decode()
        if body is not None and status in FINAL_STATUSES:
            view = orjson.loads(body)
            view["status"] = status
            return view
        return {"id": job_id, "status": status, "kind": kind.decode() if kind else None}

    async def live_workers(self, stale_after_s: float) -> int:
        return await self._redis.zcount(WORKER_HEARTBEAT_KEY, time.time() - stale_after_s, "+inf")


def is_final(view: dict) -> bool:
    return view.get("status") in FINAL_STATUSES
