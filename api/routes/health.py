"""Liveness and readiness: live = this process answers; ready = it can serve predictions."""

from __future__ import annotations

from fastapi import APIRouter
from redis.exceptions import RedisError
from starlette.responses import Response

from api.deps import SettingsDep, StoreDep
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
        **error_responses({503: "Redis unreachable or no live worker"}),
    },
)
async def readyz(store: StoreDep, settings: SettingsDep) -> Response:
    try:
        workers = await ready_workers(store, settings.worker_stale_s)
    except ApiError as exc:
        return json_response(exc.body(), 503, {"Retry-After": "1"})
    return json_response({"status": "ready", "workers": workers})


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
