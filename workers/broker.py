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

Installed by workers/app.py as the `redis` transport of the worker's (and Flower's)
process: URLs stay `redis://...`, which Flower needs to recognise its broker.
"""

from __future__ import annotations

import logging
from time import time

from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps
from redis.exceptions import ResponseError

from common.jobstate import ALLOW_OOM

log = logging.getLogger(__name__)

APPEND_UNACKED = (
    ALLOW_OOM
    + """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
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


class QoS(kombu_redis.QoS):
    def append(self, message, delivery_tag) -> None:
        delivery = message.delivery_info
        raw = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        try:
            with self.channel.conn_or_acquire() as client:
                keys = [self.unacked_index_key, self.unacked_key]
                client.eval(APPEND_UNACKED, len(keys), *keys, time(), delivery_tag, raw)
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
        try:
            super().restore_by_tag(tag, client, leftmost)
        except ResponseError as exc:
            log.warning("message %s not requeued now (stays unacked): %s", tag, exc)

    def restore_visible(self, start=0, num=10, interval=10) -> None:
        try:
            super().restore_visible(start, num, interval)
        except ResponseError as exc:
            log.warning("unacked messages not restored now: %s", exc)


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Make `redis://` broker URLs of this process use this transport."""
    TRANSPORT_ALIASES["redis"] = f"{__name__}:Transport"
