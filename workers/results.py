"""Writes job outcomes to Redis: first result wins, one round trip and one PUBLISH per batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import redis

from common.contract import WORKER_PACE_KEY, job_key, result_channel
from common.jobstate import ALLOW_OOM, FINISH, MARK_RUNNING, finish_args
from common.reviews import ADD_REVIEWS, PENDING_REVIEWS_KEY

log = logging.getLogger(__name__)

KEEP_REVIEWED = (
    ALLOW_OOM
    + """
-- KEYS: job keys with a pending review. ARGV[1]: seconds. A sync answer is normally kept
-- DIGITS_SYNC_RESULT_TTL_S, but a job a person will review keeps the review's retention.
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'keep', ARGV[1])
    redis.call('EXPIRE', key, ARGV[1])
  end
end
return #KEYS
"""
)


@dataclass(frozen=True)
class Outcome:
    job_id: str
    status: str
    body: dict


@dataclass(frozen=True)
class ReviewRecord:
    review_id: str
    job_key: str
    fields: dict
    image: bytes


@dataclass(frozen=True)
class WriteReport:
    written: int
    duplicates: int


class ResultWriter:
    MESSAGE_OVERHEAD_S = 0.002
    """Celery's own cost per message (receive, ack), measured outside the task body."""

    def __init__(
        self,
        client: redis.Redis,
        worker_name: str,
        retry_for_s: float = 30.0,
        review_ttl_s: int = 24 * 3600,
        max_pending_reviews: int = 50_000,
    ) -> None:
        self._redis = client
        self._review_ttl_s = review_ttl_s
        self._max_pending_reviews = max_pending_reviews
        self._skip_logged_at = 0.0
        # NOTE: allow-oom: flagged predictions of accepted work are kept even at maxmemory.
        self._add_reviews = client.register_script(ALLOW_OOM + ADD_REVIEWS.lstrip("\n"))
        self._keep_reviewed = client.register_script(KEEP_REVIEWED)
        self._seconds_per_message: float | None = None
        self._reported_at = 0.0
        self._mark_running = client.register_script(MARK_RUNNING)
        self._finish = client.register_script(FINISH)
        self._worker_name = worker_name
        self._retry_for_s = retry_for_s

    def mark_running(self, job_ids: Sequence[str]) -> None:
        keys = [job_key(i) for i in job_ids]
        self._mark_running(keys=keys, args=[f"{time.time():.6f}", self._worker_name])

    def finish(self, outcomes: Sequence[Outcome], reply_to: str | None) -> WriteReport:
        """Store every outcome; notify the waiting API process, if any, in one message.

        NOTE: retried for `retry_for_s` on connection errors: a result computed while Redis
        restarts must not be dropped (the message is acknowledged only after this returns).
        After that it raises; the jobs are recovered by the sweeper, not by this process.
        """
        keys = [job_key(o.job_id) for o in outcomes]
        triples = [(o.job_id, o.status, orjson.dumps(o.body)) for o in outcomes]
        args = finish_args(result_channel(reply_to) if reply_to else "", time.time(), triples)
        deadline = time.monotonic() + self._retry_for_s
        delay = 0.1
        while True:
            try:
                written, duplicates = self._finish(keys=keys, args=args)
                if duplicates:
                    log.info("duplicate results dropped", extra={"duplicates": duplicates})
                return WriteReport(int(written), int(duplicates))
            except (redis.ConnectionError, redis.TimeoutError):
                if time.monotonic() > deadline:
                    # The task fails and Celery acknowledges it: the jobs stay `running`
                    # until the API's sweeper re-sends them (DIGITS_TASK_TIME_LIMIT_S), never
                    # longer.
                    log.error(
                        "result write gave up; the sweeper will re-send the jobs",
                        extra={"job_ids": [o.job_id for o in outcomes]},
                    )
                    raise
                log.warning("redis unavailable while writing results; retrying")
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def report_batch_seconds(self, seconds: float, every_s: float = 0.5) -> None:
        """Keep an EWMA of seconds per message in Redis (admission control reads it)."""
        seconds += self.MESSAGE_OVERHEAD_S
        previous = self._seconds_per_message
        self._seconds_per_message = seconds if previous is None else 0.8 * previous + 0.2 * seconds
        now = time.monotonic()
        if now - self._reported_at >= every_s:
            self._reported_at = now
            try:
                value = f"{self._seconds_per_message:.6f}"
                self._redis.hset(WORKER_PACE_KEY, self._worker_name, value)
            except redis.RedisError as exc:
                log.warning("could not report batch time: %s", exc)

    def add_reviews(self, items: Sequence[ReviewRecord]) -> tuple[int, int]:
        """Queue flagged predictions for a person (idempotent: a re-run adds nothing), up to
        DIGITS_MAX_PENDING_REVIEWS pending; (added, not queued because the review queue was
        full)."""
        if not items:
            return 0, 0
        args: list = [f"{time.time():.6f}", self._review_ttl_s, self._max_pending_reviews]
        for item in items:
            args += [item.review_id, item.job_key, orjson.dumps(item.fields), item.image]
        added, skipped, *job_keys = self._add_reviews(keys=[PENDING_REVIEWS_KEY], args=args)
        if job_keys:
            keys = sorted({key.decode() if isinstance(key, bytes) else key for key in job_keys})
            self._keep_reviewed(keys=keys, args=[self._review_ttl_s])
        if skipped and time.monotonic() - self._skip_logged_at > 60:
            self._skip_logged_at = time.monotonic()
            log.warning(
                "review queue full (DIGITS_MAX_PENDING_REVIEWS=%d): %d flagged images not queued",
                self._max_pending_reviews,
                skipped,
            )
        return int(added), int(skipped)
