"""How long `/v1/slo` takes to read and sum a full day of counts (not collected by pytest).

    .venv/bin/python -m tests.observability.bench_slo_read

Fills a throw-away redis-server with 60 full minute hashes and 24 full hour hashes, then
times `CountsReader.read` + the three window summaries: the first read and the steady state
(only the newest minutes and hours are re-read).
"""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from api.slo import WINDOWS, CountsReader, Objectives, load_reference, summarize, windows_of
from common.rollup import HOUR_PREFIX, ROLLUP_PREFIX
from tests.harness import RedisServer

FIELDS = {
    "req": 60_000,
    "class:2xx": 59_990,
    "class:4xx": 10,
    "batches": 500,
    "batch_images": 60_000,
    "review": 30,
    "rej:invalid_json": 10,
    **{f"lat:{i}": 100 for i in range(14)},
    **{f"pred:{d}": 6000 for d in range(10)},
    **{f"conf:{i}": 10 for i in range(20)},
}


async def _time(reader_factory, redis_url: str, now: float, rounds: int = 5) -> float:
    client = Redis.from_url(redis_url)
    reference = load_reference("models", "mnist_cnn")
    reader, best = reader_factory(), float("inf")
    await reader.read(client, now)  # warm: later reads only refresh the newest hashes
    for _ in range(rounds):
        started = time.perf_counter()
        windows = windows_of(await reader.read(client, now))
        for name, minutes in WINDOWS.items():
            summarize(windows[name], minutes, Objectives(), reference)
        best = min(best, time.perf_counter() - started)
    await client.aclose()
    return best


async def main() -> None:
    server = RedisServer()
    try:
        now = time.time()
        minute, hour = int(now // 60), int(now // 3600)
        pipe = server.client().pipeline()
        for back in range(60):
            pipe.hset(f"{ROLLUP_PREFIX}{minute - back}", mapping=FIELDS)
        for back in range(24):
            pipe.hset(f"{HOUR_PREFIX}{hour - back}", mapping=FIELDS)
        pipe.execute()
        client = Redis.from_url(server.url)
        first = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            await CountsReader().read(client, now)
            first = min(first, time.perf_counter() - started)
        await client.aclose()
        steady = await _time(CountsReader, server.url, now)
        print(
            f"first read {first * 1e3:.1f} ms; steady state (read + 3 summaries) "
            f"{steady * 1e3:.1f} ms"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
