"""The API's Prometheus metrics and per-minute SLO counts, recorded by one pure ASGI middleware.

Multiprocess: with `PROMETHEUS_MULTIPROC_DIR` set (`make run`, compose) every uvicorn worker
writes its samples under `<dir>/api` and any of them serves the sum on `/metrics`. Without it
the API is one process and the ordinary registry is exact. prometheus_client picks its
storage when it is first imported, so the directory is chosen before the import below.

Cost: in multiprocess mode each `inc()`/`observe()` is a locked mmap write (5-10 µs), so a
request only bumps plain dicts; `apply_pending()` moves the sums into the Prometheus metrics
every second (and before each scrape of this process).
"""

from __future__ import annotations

import logging
import os
import re
import time

import orjson

from common.prom import add_bucketed, use_multiprocess_dir

_MULTIPROC_DIR = use_multiprocess_dir("api", private_if_unset=False)

from prometheus_client import Counter, Gauge, Histogram  # noqa: E402
from starlette.types import ASGIApp, Message, Receive, Scope, Send  # noqa: E402

from api.periodic import Periodic  # noqa: E402
from common.rollup import LATENCY_BUCKETS, Rollup, latency_bucket  # noqa: E402

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "digits_http_requests",
    "HTTP requests by route template, method and status class.",
    ["route", "method", "status_class"],
)
HTTP_DURATION = Histogram(
    "digits_http_request_duration_seconds",
    "Time from request start to the end of the response, by route template.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "digits_http_requests_in_flight",
    "Requests being served now.",
    multiprocess_mode="livesum",
)
SYNC_FALLBACK = Counter(
    "digits_sync_fallback", "Synchronous requests not answered in time: returned a 202 job."
)
REJECTIONS = Counter(
    "digits_rejections",
    "/v1 and /v2/models requests answered 4xx/5xx, by the error code of the body.",
    ["reason"],
)

ROLLUP = Rollup()
"""This process's SLO counts, flushed to Redis by `RollupFlusher` (read by `/v1/slo`)."""

UNMATCHED = "unmatched"
SLO_PREFIXES = ("/v1/", "/v2/models/")
"""Routes inside the availability/latency SLI: v1 and the Open Inference Protocol's models."""
SLO_EXCLUDED = frozenset({"/v1/slo"})
"""Routes outside the availability/latency SLI: the dashboard's own polling is not traffic."""
SYNC_ROUTES = frozenset({"/v1/predict", "/v1/postcodes"})
"""A 202 from these is a synchronous request that fell back to a job (`wait` ran out)."""
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def multiprocess_dir() -> str:
    return _MULTIPROC_DIR


def _error_code(body: bytes | None) -> str:
    """The `error.code` of one of our error bodies (api/errors.py), bounded for a label."""
    try:
        code = orjson.loads(body or b"")["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return "other"
    return code if isinstance(code, str) and _CODE.match(code) else "other"


class _Pending:
    """Request counts of this process not yet added to the Prometheus metrics."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.latency: dict[str, list] = {}  # route -> [bucket counts..., sum of seconds]
        self.rejections: dict[str, int] = {}
        self.fallbacks = 0
        self.in_flight = 0


_PENDING = _Pending()
_NO_LATENCY = len(LATENCY_BUCKETS) + 1


def apply_pending() -> None:
    """Add the pending request counts to the Prometheus metrics (every second, and on scrape)."""
    requests, _PENDING.requests = _PENDING.requests, {}
    latency, _PENDING.latency = _PENDING.latency, {}
    rejections, _PENDING.rejections = _PENDING.rejections, {}
    fallbacks, _PENDING.fallbacks = _PENDING.fallbacks, 0
    for labels, n in requests.items():
        HTTP_REQUESTS.labels(*labels).inc(n)
    for route, counts in latency.items():
        add_bucketed(HTTP_DURATION.labels(route), counts[:_NO_LATENCY], counts[_NO_LATENCY])
    for reason, n in rejections.items():
        REJECTIONS.labels(reason).inc(n)
    if fallbacks:
        SYNC_FALLBACK.inc(fallbacks)
    HTTP_IN_FLIGHT.set(_PENDING.in_flight)


class MetricsMiddleware:
    """Counts every HTTP request by route template: a few dict updates per request.

    Pure ASGI (not BaseHTTPMiddleware): no extra task or body buffering per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception escaping the app is answered 500 by Starlette
        error_body: bytes | None = None

        async def send_status(message: Message) -> None:
            nonlocal status, error_body
            if message["type"] == "http.response.start":
                status = message["status"]
            elif status >= 400 and error_body is None:
                error_body = message.get("body", b"")[:4096]  # its code is the rejection reason
            await send(message)

        _PENDING.in_flight += 1
        try:
            await self.app(scope, receive, send_status)
        finally:
            _PENDING.in_flight -= 1
            _record(scope, status, time.perf_counter() - started, error_body)


def _record(scope: Scope, status: int, seconds: float, error_body: bytes | None) -> None:
    route = scope.get("route")
    template = getattr(route, "path_format", None) or UNMATCHED
    status_class = f"{status // 100}xx"
    key = (template, scope["method"], status_class)
    requests = _PENDING.requests
    requests[key] = requests.get(key, 0) + 1
    bucket = latency_bucket(seconds)
    counts = _PENDING.latency.get(template)
    if counts is None:
        counts = _PENDING.latency[template] = [0] * _NO_LATENCY + [0.0]
    counts[bucket] += 1
    counts[_NO_LATENCY] += seconds
    if not template.startswith(SLO_PREFIXES) or template in SLO_EXCLUDED:
        return
    counts = {"req": 1, f"lat:{bucket}": 1, f"class:{status_class}": 1}
    if status >= 400:
        reason = _error_code(error_body)
        _PENDING.rejections[reason] = _PENDING.rejections.get(reason, 0) + 1
        counts[f"rej:{reason}"] = 1
    elif status == 202 and template in SYNC_ROUTES:
        _PENDING.fallbacks += 1
        counts["fallback"] = 1
    ROLLUP.add_many(counts)


class RollupFlusher:
    """Adds this process's counts to the current minute in Redis every `interval_s`."""

    def __init__(self, client, interval_s: float = 1.0) -> None:
        self._redis = client
        self._loop = Periodic("slo-rollup-flush", interval_s, self.flush)

    def start(self) -> None:
        self._loop.start()

    async def flush(self) -> None:
        apply_pending()
        counts = ROLLUP.drain()
        if not counts:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                ROLLUP.pipeline_writes(pipe, counts)
                await pipe.execute()
        except Exception as exc:  # Redis down: keep the counts for the next flush
            ROLLUP.add_many(counts)
            log.warning("SLO counts not flushed: %s", exc)

    async def stop(self) -> None:
        await self._loop.stop()
        await self.flush()
        if _MULTIPROC_DIR:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), _MULTIPROC_DIR)
