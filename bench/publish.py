"""`python -m bench.publish`: the CPU of one Celery publish, stock kombu against ours.

One message of the API's shape (a few jobs, their base64 images) published by name to a
throw-away Redis, arms alternating in one process, medians over rounds: what
`common.queueing.Channel` and the API's short `argsrepr` save (docs/DESIGN.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

from common.contract import QUEUE_INTERACTIVE, TASK_PREDICT
from common.queueing import TRANSPORT, make_celery
from harness.processes import RedisServer

PAYLOAD = {
    "jobs": [{"id": f"job-{i}", "kind": "digits"} for i in range(4)],
    "images": "A" * 4200,  # 4 images of 28 x 28, base64
    "enqueued_at": 0.0,
    "reply_to": "bench",
}


def publish_us(app, count: int, short_repr: bool) -> float:
    """CPU microseconds per publish."""
    options = {"argsrepr": "[<4 jobs>]", "kwargsrepr": "{}"} if short_repr else {}
    started = time.process_time()
    for _ in range(count):
        app.send_task(
            TASK_PREDICT,
            args=[PAYLOAD],
            queue=QUEUE_INTERACTIVE,
            retry=False,
            ignore_result=True,
            **options,
        )
    return (time.process_time() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="publishes per arm and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    redis = RedisServer()
    try:
        arms = {
            "stock kombu, repr of the arguments": (make_celery("stock", redis.url), False),
            "stock kombu, short argsrepr": (make_celery("stock", redis.url), True),
            "common.queueing.Transport, short argsrepr": (
                make_celery("ours", redis.url, broker_transport=TRANSPORT),
                True,
            ),
        }
        for app, short in arms.values():
            publish_us(app, 200, short)  # connections, queue declarations
        samples: dict[str, list[float]] = {name: [] for name in arms}
        for _ in range(args.rounds):
            for name, (app, short) in arms.items():
                samples[name].append(publish_us(app, args.count, short))
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
