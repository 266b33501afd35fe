"""The API's publisher and the worker's transport reuse one Redis client per connection pool."""

from __future__ import annotations

import json

from common.contract import QUEUE_BULK, TASK_PREDICT
from common.queueing import TRANSPORT, Channel, make_celery
from harness.processes import RedisServer
from workers import broker

QUEUE = f"{QUEUE_BULK}-channel-test"


def test_publishes_share_one_client_and_a_new_pool_gets_a_new_one() -> None:
    redis = RedisServer()
    try:
        app = make_celery("channel-test", redis.url, broker_transport=TRANSPORT)
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            assert isinstance(channel, Channel)
            first = channel._create_client()
            assert channel._create_client() is first
            for n in range(3):
                app.send_task(TASK_PREDICT, args=[{"n": n}], queue=QUEUE, connection=connection)
            assert channel._create_client() is first

            channel._pool.disconnect()
            channel._pool = None  # what kombu does after a lost connection
            assert channel._create_client() is not first
            app.send_task(TASK_PREDICT, args=[{"n": 3}], queue=QUEUE, connection=connection)

        bodies = [json.loads(m) for m in redis.client().lrange(QUEUE, 0, -1)]
        assert len(bodies) == 4  # every publish arrived, before and after the new pool
    finally:
        redis.stop()


def test_the_workers_transport_keeps_its_own_qos_on_the_shared_channel() -> None:
    assert issubclass(broker.Channel, Channel)
    assert broker.Channel.QoS is broker.QoS
