"""Liveness and readiness: live = this process answers; ready = it can accept work."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from redis.exceptions import RedisError
from starlette.responses import Response

from api.deps import ServiceDep, SettingsDep, StoreDep
from api.errors import ApiError, json_response
from api.jobs import JobStore
from api.openapi import error_responses
from api.schemas import Live, Ready

router = APIRouter(tags=["health"])


@router.get("/livez", responses={200: {"model": Live}})
async def livez() -> Response:
    return json_response({"status": "live"})


@router.get(
    "/readyz",
    responses={
        200: {"model": Ready},
        **error_responses(
            {
                503: "Redis unreachable, the result subscription down, "
                "or (with `workers=1`) no live worker"
            }
        ),
    },
)
async def readyz(
    store: StoreDep,
    service: ServiceDep,
    settings: SettingsDep,
    workers: Annotated[
        bool,
        Query(
            description="Also require a live worker: the whole service can answer sync requests."
        ),
    ] = False,
) -> Response:
    """Ready = this replica can accept work: Redis answers and its result subscription is
    alive. Not whether a worker is up: during a worker outage every replica would leave the
    load balancer, although bulk work is still accepted (issue 18). `?workers=1` asks that
    too (`make run`'s banner, scripts)."""
    try:
        live = await store.live_workers(settings.worker_stale_s)
    except (RedisError, OSError) as exc:
        return _not_ready("redis_unavailable", f"Redis is unreachable: {exc}")
    if not service.listener.healthy:
        return _not_ready(
            "results_unavailable", "this replica's result subscription is down; reconnecting"
        )
    if workers and live < 1:
        return _not_ready("no_workers", "no worker with a loaded model has reported recently")
    return json_response({"status": "ready", "workers": live, "sync": live >= 1})


def _not_ready(code: str, message: str) -> Response:
    return json_response(ApiError(code, message).body(), 503, {"Retry-After": "1"})


async def ready_workers(store: JobStore, stale_s: float) -> int:
    """Live workers with a loaded model (>= 1), or an ApiError that says why not ready."""
    try:
        workers = await store.live_workers(stale_s)
    except (RedisError, OSError) as exc:
        raise ApiError(
            "redis_unavailable", f"Redis is unreachable: {exc}", status_code=503
        ) from None
    if workers < 1:
        raise ApiError(
            "no_workers",
            "no worker with a loaded model has reported recently",
            status_code=503,
        )
    return workers
