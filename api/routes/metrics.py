"""`GET /metrics` (Prometheus text) and `GET /v1/slo` (the dashboard's JSON)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api import queue_stats
from api.errors import json_response
from api.metrics import apply_pending, multiprocess_dir
from api.openapi import error_responses
from api.queue_stats import QueueState
from api.schemas import SloReport
from api.slo import WINDOWS, summarize, timeline, windows_of
from common.prom import LiveCollector

router = APIRouter(tags=["observability"])


class _QueueCollector:
    """Queue gauges read from Redis just before this scrape (same value in every process)."""

    def __init__(self, states: dict[str, QueueState]) -> None:
        self._states = states

    def collect(self):
        depth = GaugeMetricFamily(
            "digits_queue_depth", "Messages waiting in a Celery queue.", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "digits_queue_oldest_age_seconds",
            "Age of the oldest message waiting in a queue (0 when empty).",
            labels=["queue"],
        )
        for queue, state in self._states.items():
            depth.add_metric([queue], state.depth)
            age.add_metric([queue], state.oldest_age_s)
        yield depth
        yield age


def _exposition(states: dict[str, QueueState]) -> bytes:
    queues = CollectorRegistry()
    queues.register(_QueueCollector(states))
    if not multiprocess_dir():
        return generate_latest(REGISTRY) + generate_latest(queues)
    # A uvicorn worker killed outright leaves its in-flight gauge at its last value: dropped.
    registry = CollectorRegistry()
    registry.register(LiveCollector(multiprocess_dir()))
    return generate_latest(registry) + generate_latest(queues)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    obs = request.app.state.observability
    try:
        states = await queue_stats.queue_states(obs.redis)
    except Exception:  # Redis down: the process metrics are still worth scraping
        states = {}
    # Reading every process's files is blocking I/O: keep it off the event loop.
    apply_pending()
    body = await run_in_threadpool(_exposition, states)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/slo", responses={200: {"model": SloReport}, **error_responses([503])})
async def slo(request: Request) -> Response:
    """SLO windows (5 min, 1 h, 24 h), queues, live workers and prediction drift, as JSON."""
    obs = request.app.state.observability
    try:
        return json_response(await _slo_body(obs, request.app.state.settings))
    except (RedisError, OSError) as exc:  # stalled or down: say so now, do not wait on it
        body = {"error": {"code": "redis_unavailable", "message": f"SLO counts unknown: {exc}"}}
        return json_response(body, 503, {"Retry-After": "1"})


async def _slo_body(obs, settings) -> dict:
    now = time.time()
    counts = await obs.read_counts(now)
    windows = windows_of(counts)
    reference = obs.reference
    return {
        "generated_at": round(now, 3),
        "objectives": {
            "availability": obs.objectives.availability,
            "latency_s": obs.objectives.latency_s,
            "drift_psi": obs.objectives.drift_psi,
            "drift_min_samples": obs.objectives.drift_min_samples,
        },
        "model": {"name": reference.model, "version": reference.version} if reference else None,
        "queues": {
            queue: {"depth": state.depth, "oldest_age_s": round(state.oldest_age_s, 3)}
            for queue, state in (await queue_stats.queue_states(obs.redis, now)).items()
        },
        "workers": await queue_stats.workers(obs.redis, settings.worker_stale_s, now),
        "windows": {
            name: summarize(windows[name], length, obs.objectives, reference)
            for name, length in WINDOWS.items()
        },
        "timeline": timeline(counts.minutes, now),
    }
