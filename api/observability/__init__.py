"""Observability: the API's metrics (`metrics`, one ASGI middleware), the SLO numbers read
from Prometheus (`slo`) and the live queue state read from Redis (`queue_stats`).

This module is what the lifespan starts: a Prometheus client for `/v1/slo`, a Redis
client for the live state (queues, workers, review backlog). Installed on
`app.state.observability`; read by `api.routes.metrics`.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.config import ApiSettings
from api.observability import queue_stats, slo
from api.observability.metrics import MetricsMiddleware, declare_routes, forget_this_process
from common.reviews import PENDING_REVIEWS_KEY

OBSERVABILITY_TIMEOUT_S = 0.25
"""Each Redis read and Prometheus query of /v1/slo and /metrics gives up after this (issue 18:
with Redis paused 3 s, /v1/slo took 2.55 s on the old 5 s timeout)."""
CACHE_S = 1.0
"""Each API process reuses a report this long, however many dashboards poll it."""


class Observability:
    def __init__(self, settings: ApiSettings) -> None:
        # Own client, so a slow read here never holds a prediction's connection.
        timeout = OBSERVABILITY_TIMEOUT_S
        self.redis = Redis.from_url(
            settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.prometheus = slo.Prometheus(settings.prometheus_url, timeout)
        self.rule = slo.DriftRule(settings.drift_psi_threshold, settings.drift_min_samples)
        self._worker_stale_s = settings.worker_stale_s
        self._cache: tuple[float, dict[str, Any]] | None = None

    async def stop(self) -> None:
        await self.redis.aclose()
        await self.prometheus.aclose()
        forget_this_process()

    async def report(self) -> dict[str, Any]:
        """The `/v1/slo` body; parts whose source is down are null, with the reason."""
        now = time.time()
        if self._cache and now - self._cache[0] < CACHE_S:
            return self._cache[1]
        body = {"generated_at": round(now, 3), **await self._from_prometheus(now)}
        body.update(await self._from_redis(now))
        body["sources"] = {"prometheus": body.pop("_prometheus"), "redis": body.pop("_redis")}
        self._cache = (now, body)
        return body

    async def _from_prometheus(self, now: float) -> dict[str, Any]:
        source = {"url": self.prometheus.url, "ok": True, "reason": None}
        try:
            answers = await slo.read(self.prometheus, now)
        except slo.PrometheusUnavailable as exc:
            source.update(ok=False, reason=f"Prometheus unavailable: {exc}")
            return {
                "_prometheus": source,
                "objectives": slo.objectives({"now": []}, self.rule),
                "model": None,
                "current": None,
                "windows": None,
                "timeline": None,
            }
        current = slo.current(answers)
        return {
            "_prometheus": source,
            "objectives": slo.objectives(answers, self.rule),
            "model": current["model"],
            "current": current,
            "windows": slo.windows(answers, self.rule),
            "timeline": slo.timeline(answers, now),
        }

    async def _from_redis(self, now: float) -> dict[str, Any]:
        try:
            queues = await queue_stats.queue_states(self.redis, now)
            workers = await queue_stats.workers(self.redis, self._worker_stale_s, now)
            pending = await self.redis.zcard(PENDING_REVIEWS_KEY)
            oldest = await self.redis.zrange(PENDING_REVIEWS_KEY, 0, 0, withscores=True)
        except (RedisError, OSError) as exc:  # stalled or down: say so now, do not wait
            reason = f"Redis unavailable: {type(exc).__name__}: {exc}"
            return {
                "_redis": {"ok": False, "reason": reason},
                "queues": None,
                "workers": None,
                "reviews": None,
            }
        return {
            "_redis": {"ok": True, "reason": None},
            "queues": {
                queue: {
                    "depth": state.depth,
                    "images": state.images,
                    "oldest_age_s": round(state.oldest_age_s, 3),
                }
                for queue, state in queues.items()
            },
            "workers": workers,
            "reviews": {
                "pending": pending,
                "oldest_age_s": round(max(0.0, now - float(oldest[0][1])), 3) if oldest else None,
            },
        }


def install(app: FastAPI) -> None:
    """The request-metrics middleware; call once in `create_app`."""
    app.add_middleware(MetricsMiddleware)


async def start(app: FastAPI, settings: ApiSettings) -> Observability:
    observability = Observability(settings)
    app.state.observability = observability
    paths = app.openapi().get("paths", {})
    declare_routes({path: list(methods) for path, methods in paths.items()})
    return observability
