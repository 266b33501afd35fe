"""The worker's Celery app (`celery -A workers.app:celery_app ...`; Flower uses it too).

Importing this module connects to nothing and loads no model: each pool process loads
the model after fork (`workers.tasks`), so start-up cost is paid once per process.
"""

from __future__ import annotations

from celery import Celery

from common.queueing import make_celery
from workers import broker
from workers.config import WorkerSettings

# A full Redis (maxmemory) must not stop the worker: `redis://` means workers.broker here.
broker.install()


def create_celery(settings: WorkerSettings) -> Celery:
    return make_celery(
        "digits-worker",
        settings.redis_url,
        include=["workers.tasks"],
        # At-least-once: a message is acknowledged after its batch is written; a pool
        # process killed mid-batch puts its message back on the queue at once.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # No message runs forever: the soft limit fails its jobs (`timed_out`), the hard one
        # kills the pool process; a job left `running` either way is re-sent by the sweeper.
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_time_limit_s,
        # NOTE: task events cost ~26 % of worker CPU per message (profiled); Flower turns
        # them on at runtime when it starts, so they are only paid while someone watches.
        worker_send_task_events=False,
        task_send_sent_event=False,
        transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "socket_connect_timeout": 2.0,
            "socket_timeout": 10.0,
        },
    )


settings = WorkerSettings()
celery_app = create_celery(settings)
