"""The Celery configuration both sides share: broker, queues, serializer, fail-fast timeouts.

The API builds its Celery app from here only to *send* by task name; it has no result
backend, because results come back through our own Redis keys (see `common.contract`).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue
from kombu.transport import redis as kombu_redis

from common.contract import KEY_PREFIX, QUEUE_BULK, QUEUE_INTERACTIVE

QUEUES = (QUEUE_INTERACTIVE, QUEUE_BULK)
UNACKED_KEY = f"{KEY_PREFIX}:unacked"
UNACKED_INDEX_KEY = f"{KEY_PREFIX}:unacked_index"
"""Kombu's hash of delivered, unacknowledged messages (delivery tag -> message) and its index
by delivery time: named here because the API's sweeper removes a dead worker's entry once
it has re-sent the jobs, so the message does not come back after the visibility timeout;
under the stack's namespace, so another stack on the same Redis never restores ours."""


class Channel(kombu_redis.Channel):
    """Kombu's Redis channel, reusing one client object for its blocking commands.

    NOTE: kombu builds a new `redis.Redis` around the same connection pool for every publish
    and every acknowledgement; redis-py's constructor (its response-callback table) was 19 %
    of a publish's CPU, profiled. A client on a pool is thread-safe, so one per pool is kept;
    a new pool (kombu replaces it after a disconnect) gets a new client.
    """

    _blocking_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool
        client = self._blocking_client
        if client is None or client.connection_pool is not pool:
            client = self._blocking_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"
"""For `broker_transport`: the API's publisher; the worker's own transport (workers.broker)
builds on the same Channel."""


def make_celery(
    name: str, broker_url: str, transport_options: dict | None = None, **overrides: Any
) -> Celery:
    """`transport_options` are merged into the shared ones (queue order, unacked keys)."""
    app = Celery(name, broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=QUEUE_BULK,
        # NOTE: an exchange per queue; with the default exchange both queues would share one
        # binding and every message would be delivered to both.
        task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
        # NOTE: with "priority" the worker's BRPOP lists queues in the order given to -Q,
        # so interactive work is always taken before bulk work.
        broker_transport_options={
            "queue_order_strategy": "priority",
            "socket_connect_timeout": 0.5,
            "socket_timeout": 2.0,
            "unacked_key": UNACKED_KEY,
            "unacked_index_key": UNACKED_INDEX_KEY,
            "unacked_mutex_key": f"{KEY_PREFIX}:unacked_mutex",
            **(transport_options or {}),
        },
        broker_connection_timeout=0.5,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.conf.update(overrides)
    return app
