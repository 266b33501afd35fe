"""The API's Prometheus metrics, recorded by one pure ASGI middleware.

Multiprocess: with `PROMETHEUS_MULTIPROC_DIR` set (`make run`, compose) every uvicorn worker
writes its samples under `<dir>/api` and any of them serves the sum on `/metrics`. Without it
the API is one process and the ordinary registry is exact. prometheus_client picks its
storage when it is first imported, so the directory is chosen before the import below.

Cost: plain `inc()`/`observe()` on every request; in multiprocess mode each is a locked mmap
write of ~1-3 µs (docs/DESIGN.md, measured), against ~2 ms of CPU per request.
These counters are the only record of traffic: Prometheus scrapes them, and `/v1/slo` reads
Prometheus (`api/observability/slo.py`).
"""

from __future__ import annotations

import os
import re
import time

import orjson

from common.prom import use_multiprocess_dir

_MULTIPROC_DIR = use_multiprocess_dir("api", private_if_unset=False)

from prometheus_client import Counter, Gauge, Histogram  # noqa: E402
from starlette.types import ASGIApp, Message, Receive, Scope, Send  # noqa: E402

from api.serving.shedding import SHED_ROUTES  # noqa: E402

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0)
"""Seconds. 2.0 is an edge: the share within the 2 s objective is exact (`le="2.0"`)."""
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")

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
REVIEWS_RESOLVED = Counter(
    "digits_reviews_resolved",
    "Review items a person resolved, by the model version that answered them and whether "
    "it was right (the canary's accuracy on reviewed labels).",
    ["version", "outcome"],
)

UNMATCHED = "unmatched"
COUNTED_PREFIXES = ("/v1/", "/v2/models/")
"""Routes whose rejections and fallbacks are counted. Which routes are inside the SLI is
decided once, in deploy/prometheus/rules/recording.yml."""
SYNC_ROUTES = frozenset(SHED_ROUTES.values())
"""A 202 from these is a synchronous request that fell back to a job (`wait` ran out)."""
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def multiprocess_dir() -> str:
    return _MULTIPROC_DIR


def declare_routes(routes: dict[str, list[str]]) -> None:
    """Create every route's series at zero (`{path: [methods]}`, the OpenAPI paths).

    NOTE: Prometheus' `increase()` cannot see the first value of a series it never saw at
    zero: a 5xx series born during an outage with 6 in it would count as 0 errors.
    """
    for path, methods in routes.items():
        HTTP_DURATION.labels(path)
        for method in methods:
            for status_class in STATUS_CLASSES:
                HTTP_REQUESTS.labels(path, method.upper(), status_class)
    SYNC_FALLBACK.inc(0)


def forget_this_process() -> None:
    """On shutdown: this process's live gauges stop counting."""
    if _MULTIPROC_DIR:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), _MULTIPROC_DIR)


def _error_code(body: bytes | None) -> str:
    """The `error.code` of one of our error bodies (api/errors.py), bounded for a label."""
    try:
        code = orjson.loads(body or b"")["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return "other"
    return code if isinstance(code, str) and _CODE.match(code) else "other"


class MetricsMiddleware:
    """Counts every HTTP request by route template.

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

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            HTTP_IN_FLIGHT.dec()
            _record(scope, status, time.perf_counter() - started, error_body)


def _record(scope: Scope, status: int, seconds: float, error_body: bytes | None) -> None:
    route = scope.get("route")
    template = getattr(route, "path_format", None) or UNMATCHED
    HTTP_REQUESTS.labels(template, scope["method"], f"{status // 100}xx").inc()
    HTTP_DURATION.labels(template).observe(seconds)
    if not template.startswith(COUNTED_PREFIXES):
        return
    if status >= 400:
        REJECTIONS.labels(_error_code(error_body)).inc()
    elif status == 202 and template in SYNC_ROUTES:
        SYNC_FALLBACK.inc()


def count_shed(route: str, waited_s: float, code: str) -> None:
    """A request refused by api.serving.shedding before it reached the app: a 503 like any other."""
    HTTP_REQUESTS.labels(route, "POST", "5xx").inc()
    HTTP_DURATION.labels(route).observe(waited_s)
    REJECTIONS.labels(code).inc()


def reviews_listed(versions: set[str | None]) -> None:
    """Review items of these versions were shown to a person: their resolved counts exist at
    zero from now on, so windowed `increase()` counts the first resolution too (a series
    first seen already at 1 would count as 0). A review resolved within one scrape interval
    of its version's first listing in this process can still be missed in a window; the
    canary judge reads the labelled records themselves and is exact."""
    for version in versions:
        for outcome in ("right", "wrong"):
            REVIEWS_RESOLVED.labels(version or "unknown", outcome)


def count_resolved_review(version: str | None, right: bool) -> None:
    """One resolved review item (`api.review.store.ReviewStore.resolve`)."""
    reviews_listed({version})
    REVIEWS_RESOLVED.labels(version or "unknown", "right" if right else "wrong").inc()
