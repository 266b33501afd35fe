"""Liveness and readiness: live = this process answers; ready = it can serve predictions."""

from __future__ import annotations

from fastapi import APIRouter
from redis.exceptions import RedisError
from starlette.responses import Response

from api.deps import SettingsDep, StoreDep
from api.errors import json_response

router = APIRouter(tags=["health"])


@router.get("/livez")
async def livez() -> Response:
    return json_response({"status": "live"})


@router.get("/readyz", responses={503: {"description": "Redis unreachable or no live worker"}})
async def readyz(store: StoreDep, settings: SettingsDep) -> Response:
    try:
        workers = await store.live_workers(settings.worker_stale_s)
    except (RedisError, OSError) as exc:
        return _not_ready("redis_unavailable", f"Redis is unreachable: {exc}")
    if workers < 1:
        return _not_ready("no_workers", "no worker with a loaded model has reported recently")
    return json_response({"status": "ready", "workers": workers})


def _not_ready(code: str, message: str) -> Response:
    return json_response({"error": {"code": code, "message": message}}, 503, {"Retry-After": "1"})
