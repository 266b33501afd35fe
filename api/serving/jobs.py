"""Job records in Redis: created by the API, completed by the workers (`common.contract`)."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
from redis.asyncio import Redis

from common.contract import (
    FINAL_STATUSES,
    KEY_PREFIX,
    QUEUED_IMAGES_KEY,
    WORKER_HEARTBEAT_KEY,
    JobSpec,
    JobStatus,
    job_key,
)
from common.jobstate import KEEP, PENDING_KEY, UNQUEUE

CREATE_KEYED = (
    UNQUEUE
    + """
-- KEYS: idempotency key, job key, pending set.
-- ARGV: ttl, job id, now, request digest, then field, value...
-- The key is bound to the job in the same atomic step that stores the job: a key never
-- names a job that does not exist (a retry after a failed submit finds it or creates it).
-- The binding is '<job id> <request digest>'; a bare '<job id>' (bound before digests were
-- stored) matches any request. Returns false (stored), or {bound job id, 1 same | 0 other}.
local bound = redis.call('GET', KEYS[1])
if bound then
  local existing, digest = string.match(bound, '^(%S+) (%S+)$')
  if not existing then existing = bound end
  if redis.call('EXISTS', 'JOB_KEY_PREFIX' .. existing) == 1 then
    if digest == nil or digest == ARGV[4] then return {existing, 1} end
    return {existing, 0}
  end
end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('EXPIRE', KEYS[2], ARGV[1])
enqueue(KEYS[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. ARGV[4], 'EX', ARGV[1])
return false
""".replace("JOB_KEY_PREFIX", job_key(""))
)


def _idempotency_key(caller: str, key: str) -> str:
    """The Redis key of a client's Idempotency-Key, scoped to its caller (the API key; never
    stored in clear): two callers using the same key do not see each other's jobs."""
    digest = hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest()
    return f"{KEY_PREFIX}:idempotency:{digest}"


def request_digest(kind: str, images: np.ndarray, meta: dict) -> str:
    """What a submission asks for: its kind, normalised images and reading options. Computed
    after decoding, so a retry that encodes the same request differently (a new multipart
    boundary, JSON spacing) is still the same request."""
    digest = hashlib.sha256(f"{kind}\n{images.shape}\n".encode())
    digest.update(orjson.dumps(meta, option=orjson.OPT_SORT_KEYS))
    digest.update(np.ascontiguousarray(images).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Bound:
    """The job an Idempotency-Key already names, and whether it was the same request."""

    job_id: str
    same_request: bool


@dataclass(frozen=True)
class NewJob:
    spec: JobSpec
    images: np.ndarray
    queue: str
    keep_s: int | None = None
    """Seconds the job is kept once answered (its `keep` field); None: `DIGITS_RESULT_TTL_S`."""
    stored: bool = False
    """Already in Redis (a keyed submission is stored with its key): only publish it."""


class JobStore:
    def __init__(self, client: Redis, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._keep = client.register_script(KEEP)
        self._create_keyed = client.register_script(CREATE_KEYED)

    @property
    def ttl_s(self) -> int:
        return self._ttl_s

    def _fields(self, job: NewJob, now: str) -> dict:
        return {
            "status": str(JobStatus.QUEUED),
            "kind": str(job.spec.kind),
            "n": job.spec.n,
            "queue": job.queue,
            "created_at": now,
            "meta": orjson.dumps(job.spec.meta),
            "keep": job.keep_s or self._ttl_s,
            "input": job.images.tobytes(),
        }

    async def create(self, jobs: Sequence[NewJob]) -> None:
        """One pipeline for every job of a message: status, input (for retries), retention.

        Unfinished jobs live `DIGITS_RESULT_TTL_S`; the worker's FINISH sets the expiry to `keep`
        and deletes the input (reviews keep their own copy of their image).
        """
        now = f"{time.time():.6f}"
        new = [job for job in jobs if not job.stored]
        if not new:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for job in new:
                key = job_key(job.spec.id)
                pipe.hset(key, mapping=self._fields(job, now))
                pipe.expire(key, self._ttl_s)
            pipe.zadd(PENDING_KEY, {job.spec.id: float(now) for job in new})
            images: Counter[str] = Counter()
            for job in new:
                images[job.queue] += job.spec.n
            for queue, count in images.items():  # one count per queue, not per job
                pipe.hincrby(QUEUED_IMAGES_KEY, queue, count)
            await pipe.execute()

    async def create_keyed(
        self, idempotency_key: str, job: NewJob, digest: str, caller: str = ""
    ) -> Bound | None:
        """Store `job` bound to `caller`'s `idempotency_key` and the request's `digest`,
        atomically, unless the key already names a stored job: then nothing is written and
        that job is returned (with whether its request had the same digest)."""
        now = f"{time.time():.6f}"
        args: list = [self._ttl_s, job.spec.id, now, digest]
        for field, value in self._fields(job, now).items():
            args += [field, value]
        keys = [_idempotency_key(caller, idempotency_key), job_key(job.spec.id), PENDING_KEY]
        bound = await self._create_keyed(keys=keys, args=args)
        if bound is None:
            return None
        job_id, same = bound
        return Bound(job_id.decode(), bool(same))

    async def keep(self, job_id: str, seconds: int) -> dict | None:
        """Keep the job `seconds` once answered (a 202 was given: the client will poll it);
        returns its public view, like `get`."""
        status, kind, body = await self._keep(keys=[job_key(job_id)], args=[seconds])
        return self._view(job_id, status, kind, body)

    async def get(self, job_id: str) -> dict | None:
        """The public view of a job, or None when unknown or expired."""
        status, kind, body = await self._redis.hmget(job_key(job_id), "status", "kind", "body")
        return self._view(job_id, status, kind, body)

    @staticmethod
    def _view(job_id: str, status, kind, body) -> dict | None:
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
