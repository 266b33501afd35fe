"""Liveness and readiness: live = this process answers; ready = it can accept work."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from redis.exceptions import RedisError
from starlette.responses import Response

from api.deps import ServiceDep, SettingsDep, StoreDep
from api.errors import ApiError, json_response
from api.openapi import error_responses
from api.schemas import Live, Ready
from api.serving.jobs import JobStore

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
        live = await live_workers(store, settings.worker_stale_s)
        if not service.listener.healthy:
            raise ApiError(
                "results_unavailable",
                "this replica's result subscription is down; reconnecting",
                status_code=503,
            )
        if workers:
            _require_a_worker(live)
    except ApiError as exc:
        return json_response(exc.body(), 503, {"Retry-After": "1"})
    return json_response({"status": "ready", "workers": live, "sync": live >= 1})


async def live_workers(store: JobStore, stale_s: float) -> int:
    """Live workers with a loaded model, or an ApiError (503) when Redis cannot say."""
    try:
        return await store.live_workers(stale_s)
    except (RedisError, OSError) as exc:
        raise ApiError(
            "redis_unavailable", f"Redis is unreachable: {exc}", status_code=503
        ) from None


def _require_a_worker(live: int) -> None:
    if live < 1:
        raise ApiError(
            "no_workers",
            "no worker with a loaded model has reported recently",
            status_code=503,
        )


async def ready_workers(store: JobStore, stale_s: float) -> int:
    """Live workers with a loaded model (>= 1), or an ApiError that says why not ready."""
    workers = await live_workers(store, stale_s)
    _require_a_worker(workers)
    return workers
