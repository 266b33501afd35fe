"""`GET /metrics` (Prometheus text) and `GET /v1/slo` (the dashboard's JSON)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.errors import json_response
from api.observability import queue_stats
from api.observability.metrics import multiprocess_dir
from api.observability.queue_stats import QueueState
from api.schemas import SloReport
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
        images = GaugeMetricFamily(
            "digits_queue_images",
            "Images in a queue's jobs not yet started (waiting or held): what scaling follows.",
            labels=["queue"],
        )
        for queue, state in self._states.items():
            depth.add_metric([queue], state.depth)
            age.add_metric([queue], state.oldest_age_s)
            images.add_metric([queue], state.images)
        yield depth
        yield age
        yield images


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
    body = await run_in_threadpool(_exposition, states)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/slo", responses={200: {"model": SloReport}})
async def slo(request: Request) -> Response:
    """SLO windows (5 min, 1 h, 24 h) from Prometheus; queues, live workers and the review
    backlog from Redis. A source that is down makes its parts null, with the reason in
    `sources`, within 0.25 s."""
    return json_response(await request.app.state.observability.report())
