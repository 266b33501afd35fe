"""The Celery configuration both sides share: broker, queues, serializer, fail-fast timeouts.

The API builds its Celery app from here only to *send* by task name; it has no result
backend, because results come back through our own Redis keys (see `common.contract`).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from common.contract import QUEUE_BULK, QUEUE_INTERACTIVE

QUEUES = (QUEUE_INTERACTIVE, QUEUE_BULK)


def make_celery(name: str, broker_url: str, **overrides: Any) -> Celery:
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
        },
        broker_connection_timeout=0.5,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.conf.update(overrides)
    return app
