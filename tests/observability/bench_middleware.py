"""Micro-benchmark of the metrics' per-request cost (not collected by pytest).

    .venv/bin/python -m tests.observability.bench_middleware
    PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) .venv/bin/python -m tests.observability.bench_middleware

Calls a trivial FastAPI route directly through ASGI (no network), with and without
`MetricsMiddleware`, and reports the best of several rounds: the difference is what the
middleware adds to every request. Then one `inc()` and one `observe()` of a labelled child
(docs/DESIGN.md quotes these numbers).
"""

from __future__ import annotations

import asyncio
import os
import time
import timeit

from fastapi import FastAPI
from starlette.responses import Response

from api.observability.metrics import HTTP_DURATION, HTTP_REQUESTS, MetricsMiddleware

app = FastAPI()


@app.post("/v1/predict")
async def _predict() -> Response:
    return Response(b"{}", media_type="application/json")


SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/v1/predict",
    "raw_path": b"/v1/predict",
    "query_string": b"",
    "root_path": "",
    "headers": [],
    "client": ("127.0.0.1", 1),
    "server": ("127.0.0.1", 80),
}


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(_: dict) -> None:
    return None


async def _per_request(target, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await target(dict(SCOPE), _receive, _send)
    return (time.perf_counter() - started) / n * 1e6


async def main(n: int = 20_000, rounds: int = 5) -> None:
    wrapped = MetricsMiddleware(app)
    await _per_request(app, 2000)
    await _per_request(wrapped, 2000)
    bare = with_metrics = float("inf")
    for _ in range(rounds):
        bare = min(bare, await _per_request(app, n))
        with_metrics = min(with_metrics, await _per_request(wrapped, n))
    counter = HTTP_REQUESTS.labels("/v1/predict", "POST", "2xx")
    histogram = HTTP_DURATION.labels("/v1/predict")
    inc = min(timeit.repeat(counter.inc, number=100_000, repeat=rounds)) * 10
    observe = (
        min(timeit.repeat(lambda: histogram.observe(0.03), number=100_000, repeat=rounds)) * 10
    )
    mode = "multiprocess" if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else "single-process"
    print(
        f"{mode}: bare {bare:.1f} µs/request, with middleware {with_metrics:.1f} µs/request, "
        f"overhead {with_metrics - bare:.1f} µs; inc() {inc:.2f} µs, observe() {observe:.2f} µs"
    )


if __name__ == "__main__":
    asyncio.run(main())
