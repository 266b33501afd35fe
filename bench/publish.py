"""`python -m bench.publish`: the CPU of one Celery publish, stock kombu against ours.

One message of the API's shape (a few jobs, their base64 images) published by name to a
throw-away Redis, arms alternating in one process, medians over rounds: what the API's own
sender (`common.queueing.Channel`, a short `argsrepr`) saves over stock Celery (docs/DESIGN.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from api.config import ApiSettings
from api.main import celery_sender
from common.contract import QUEUE_INTERACTIVE, TASK_PREDICT
from common.queueing import make_celery
from harness.processes import RedisServer

PAYLOAD = {
    "jobs": [{"id": f"job-{i}", "kind": "digits"} for i in range(4)],
    "images": "A" * 4200,  # 4 images of 28 x 28, base64
    "enqueued_at": 0.0,
    "reply_to": "bench",
}


def stock_sender(app, short_repr: bool) -> Callable[[str, dict], None]:
    """`send_task` on a stock Celery app, with Celery's repr of the arguments or a short one."""
    options = {"argsrepr": "[<4 jobs>]", "kwargsrepr": "{}"} if short_repr else {}

    def send(queue: str, payload: dict) -> None:
        app.send_task(
            TASK_PREDICT, args=[payload], queue=queue, retry=False, ignore_result=True, **options
        )

    return send


def publish_us(send: Callable[[str, dict], None], count: int) -> float:
    """CPU microseconds per publish."""
    started = time.process_time()
    for _ in range(count):
        send(QUEUE_INTERACTIVE, PAYLOAD)
    return (time.process_time() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="publishes per arm and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    redis = RedisServer()
    try:
        arms = {
            "stock kombu, repr of the arguments": stock_sender(
                make_celery("stock", redis.url), short_repr=False
            ),
            "stock kombu, short argsrepr": stock_sender(
                make_celery("stock", redis.url), short_repr=True
            ),
            "the API's sender (api.main.celery_sender)": celery_sender(
                ApiSettings(redis_url=redis.url)
            ),
        }
        for send in arms.values():
            publish_us(send, 200)  # connections, queue declarations
        samples: dict[str, list[float]] = {name: [] for name in arms}
        for _ in range(args.rounds):
            for name, send in arms.items():
                samples[name].append(publish_us(send, args.count))
        client = redis.client()
        started = time.process_time()
        for _ in range(args.count):
            client.lpush("bench:bare", "A" * 5000)
        bare = (time.process_time() - started) / args.count * 1e6
    finally:
        redis.stop()
    print(f"| publish ({args.rounds} rounds x {args.count}) | CPU µs per message (median) |")
    print("|---|---|")
    for name, values in samples.items():
        print(f"| {name} | {statistics.median(values):.0f} |")
    print(f"| a bare LPUSH of the same size | {bare:.0f} |")


if __name__ == "__main__":
    main()
