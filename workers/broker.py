"""Kombu's Redis transport, made to survive a full Redis (maxmemory, noeviction).

Stock kombu stores each delivered message in its `unacked` hash right after BRPOP took it
off the queue (`QoS.append`, a ZADD + HSET). On a Redis at `maxmemory` with `noeviction`
those writes fail with OutOfMemoryError, which escapes the consumer loop: Celery logs
"Unrecoverable error", the worker exits, and the message, already off the queue and in no
`unacked` entry, is lost (measured: issue 18). Here:

- the `unacked` write and the acknowledgement (stock kombu: a MULTI block, which Redis
  refuses at maxmemory whatever it contains) each run as one Lua script flagged
  `allow-oom`: they move the message from the queue (BRPOP freed its bytes) to `unacked`
  and back out, so they cost no net memory;
- if Redis still refuses it, the message is processed anyway (the job's record and the
  API's sweeper are the backstop if this worker dies before acknowledging it);
- requeue and visibility restores that Redis refuses are logged and left for later (the
  message stays in `unacked` and is restored once memory allows).

The same `unacked` write records, on each job the message carries, which worker holds it
(`held_by`, `held_at`, `held_tag`) and, per queue, the newest job taken so far: the API's
sweeper recovers a job held by a dead worker in seconds, and one popped off the queue but
never held (its worker lost the network as BRPOP returned) whatever the backlog behind it.

Installed by workers/app.py as the `redis` transport of the worker's (and Flower's)
process: URLs stay `redis://...`, which Flower needs to recognise its broker.
"""

from __future__ import annotations

import logging
from time import time

from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps
from redis.exceptions import RedisError, ResponseError

from common import queueing
from common.contract import JOB_IDS_HEADER, QUEUE_TAKEN_KEY, job_key
from common.jobstate import ALLOW_OOM, PENDING_KEY
from workers.heartbeat import process_name

log = logging.getLogger(__name__)

APPEND_UNACKED = (
    ALLOW_OOM
    + """
-- KEYS: unacked index, unacked hash, pending set, queue-taken hash, then one key per job.
-- ARGV: now, delivery tag, raw message, holder, queue, then the job ids.
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
local newest = nil
for i = 5, #KEYS do
  if redis.call('HGET', KEYS[i], 'status') == 'queued' then
    redis.call('HSET', KEYS[i], 'held_by', ARGV[4], 'held_at', ARGV[1], 'held_tag', ARGV[2])
  end
  local queued_at = tonumber(redis.call('ZSCORE', KEYS[3], ARGV[i + 1]))
  if queued_at and (newest == nil or queued_at > newest) then newest = queued_at end
end
if newest then
  local taken = tonumber(redis.call('HGET', KEYS[4], ARGV[5]))
  if taken == nil or newest > taken then redis.call('HSET', KEYS[4], ARGV[5], newest) end
end
return 1
"""
)
"""Records a delivered message as unacknowledged (as stock kombu does) and, in the same step,
which worker holds which jobs and how far its queue has been taken: the API's sweeper then
tells a job held by a dead worker, or popped and never held, from one still waiting."""
RELEASE_HELD = (
    ALLOW_OOM
    + """
-- KEYS: pending set, then job keys. ARGV: the delivery tag they were held under, now, then
-- the job ids. Back on the queue: unheld, and queued as of now.
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'held_tag') == ARGV[1] then
    redis.call('HDEL', KEYS[i], 'held_by', 'held_at', 'held_tag')
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[i + 1])
  end
end
return 1
"""
)
REMOVE_UNACKED = (
    ALLOW_OOM
    + """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""
)


def job_ids(message) -> list[str]:
    """The jobs a message carries, from its header (none for a message of another kind)."""
    ids = (message.headers or {}).get(JOB_IDS_HEADER) or []
    return [str(i) for i in ids]


class QoS(kombu_redis.QoS):
    def append(self, message, delivery_tag) -> None:
        delivery = message.delivery_info
        raw = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        ids = job_ids(message)
        keys = [self.unacked_index_key, self.unacked_key, PENDING_KEY, QUEUE_TAKEN_KEY]
        keys += [job_key(i) for i in ids]
        args = [time(), delivery_tag, raw, process_name(), delivery["routing_key"], *ids]
        try:
            with self.channel.conn_or_acquire() as client:
                client.eval(APPEND_UNACKED, len(keys), *keys, *args)
        except ResponseError as exc:
            log.warning("message %s not recorded as unacked: %s", delivery_tag, exc)
        virtual.QoS.append(self, message, delivery_tag)  # kombu's in-memory bookkeeping

    def ack(self, delivery_tag) -> None:
        self._forget(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag, requeue=False) -> None:
        if requeue:
            self.restore_by_tag(delivery_tag, leftmost=True)
        else:
            self._forget(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def _forget(self, delivery_tag) -> None:
        """Stock kombu acks in a MULTI block, which Redis refuses outright at maxmemory."""
        try:
            with self.channel.conn_or_acquire() as client:
                keys = [self.unacked_index_key, self.unacked_key]
                client.eval(REMOVE_UNACKED, len(keys), *keys, delivery_tag)
        except ResponseError as exc:  # redelivered later; the first result wins anyway
            log.warning("message %s not acknowledged in Redis: %s", delivery_tag, exc)

    def restore_by_tag(self, tag, client=None, leftmost=False) -> None:
        delivered: dict = self._delivered or {}
        message = delivered.get(tag)  # this process's own deliveries only
        try:
            super().restore_by_tag(tag, client, leftmost)
        except ResponseError as exc:
            log.warning("message %s not requeued now (stays unacked): %s", tag, exc)
            return
        ids = job_ids(message) if message is not None else []
        if not ids:
            return
        try:  # queued again, so no longer held: not mistaken for held by a dead worker
            with self.channel.conn_or_acquire(client) as conn:
                keys = [PENDING_KEY, *[job_key(i) for i in ids]]
                conn.eval(RELEASE_HELD, len(keys), *keys, tag, time(), *ids)
        except RedisError as exc:  # the sweeper's time limit still bounds it
            log.warning("jobs of message %s still marked held: %s", tag, exc)

    def restore_visible(self, start=0, num=10, interval=10) -> None:
        try:
            super().restore_visible(start, num, interval)
        except ResponseError as exc:
            log.warning("unacked messages not restored now: %s", exc)


class Channel(queueing.Channel):  # one client per pool, as the API's publisher
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Make `redis://` broker URLs of this process use this transport."""
    TRANSPORT_ALIASES["redis"] = f"{__name__}:Transport"
