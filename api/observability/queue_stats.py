"""Live state read from Redis when asked: queue depth, age of the oldest queued message, workers.

Celery's Redis transport LPUSHes messages and workers BRPOP them, so the oldest message of a
list is its last element; its payload carries `enqueued_at` (`common.contract.PredictMessage`).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, replace

import orjson
from redis.asyncio import Redis

from common.contract import QUEUED_IMAGES_KEY, WORKER_HEARTBEAT_KEY
from common.queueing import QUEUES

_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)
"""kombu's default priority steps: priority p > 0 lives in the list `<queue>\\x06\\x16<p>`."""


@dataclass(frozen=True)
class QueueState:
    depth: int
    oldest_age_s: float
    images: int = 0
    """Images in the queue's `queued` jobs (`QUEUED_IMAGES_KEY`): the work, not the messages."""


def _lists(queue: str) -> list[str]:
    return [queue if p == 0 else f"{queue}{_PRIORITY_SEP}{p}" for p in _PRIORITY_STEPS]


def _enqueued_at(raw: bytes | None) -> float | None:
    """The `enqueued_at` of one raw kombu message, or None if it is not ours."""
    if raw is None:
        return None
    try:
        envelope = orjson.loads(raw)
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = orjson.loads(body)[0]
        return float(args[0]["enqueued_at"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


async def queue_states(client: Redis, now: float | None = None) -> dict[str, QueueState]:
    now = time.time() if now is None else now
    names = [(queue, name) for queue in QUEUES for name in _lists(queue)]
    async with client.pipeline(transaction=False) as pipe:
        for _, name in names:
            pipe.llen(name)
            pipe.lindex(name, -1)
        pipe.hmget(QUEUED_IMAGES_KEY, *QUEUES)
        *replies, images = await pipe.execute()
    states: dict[str, QueueState] = {}
    for index, (queue, _) in enumerate(names):
        depth, oldest = replies[2 * index], _enqueued_at(replies[2 * index + 1])
        age = max(0.0, now - oldest) if depth and oldest is not None else 0.0
        previous = states.get(queue, QueueState(0, 0.0))
        states[queue] = QueueState(previous.depth + depth, max(previous.oldest_age_s, age))
    for queue, count in zip(QUEUES, images, strict=True):
        # NOTE: floored at 0: a job that expired while queued is never counted out.
        states[queue] = replace(states[queue], images=max(0, int(count or 0)))
    return states


async def workers(client: Redis, stale_after_s: float, now: float | None = None) -> list[dict]:
    """Live worker processes (recent heartbeat), idle or busy: what they do is in Prometheus."""
    now = time.time() if now is None else now
    beats: list[tuple[bytes, float]] = await client.zrangebyscore(  # type: ignore[assignment]
        WORKER_HEARTBEAT_KEY, now - stale_after_s, "+inf", withscores=True
    )
    live = [
        {"name": name.decode(), "last_seen_s": round(max(0.0, now - seen), 3)}
        for name, seen in beats
    ]
    return sorted(live, key=lambda worker: worker["name"])
