"""What the lifespan starts for observability: a Redis client, the SLO count flusher, the drift
reference. Installed on `app.state.observability`; read by `api.routes.metrics`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from redis.asyncio import Redis

from api import slo
from api.config import ApiSettings
from api.metrics import MetricsMiddleware, RollupFlusher
from api.slo import Objectives, Reference

OBSERVABILITY_TIMEOUT_S = 0.25
"""Each Redis read of /v1/slo and /metrics gives up after this (issue 18: with Redis paused
3 s, /v1/slo took 2.55 s on the old 5 s timeout)."""


class Observability:
    def __init__(self, settings: ApiSettings) -> None:
        # Own client, so a slow read here never holds a prediction's connection. Short
        # timeouts: with Redis stalled, /v1/slo and /metrics answer "unknown" within
        # OBSERVABILITY_TIMEOUT_S instead of waiting on it (a full day's read takes ~ms).
        timeout = OBSERVABILITY_TIMEOUT_S
        self.redis = Redis.from_url(
            settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.objectives = Objectives(
            availability=settings.slo_availability,
            latency_s=settings.slo_latency_s,
            drift_psi=settings.drift_psi_threshold,
            drift_min_samples=settings.drift_min_samples,
        )
        self._models_dir, self._model_name = settings.models_dir, settings.model_name
        self._aliases = Path(settings.models_dir) / settings.model_name / "aliases.json"
        self._reference_stamp: float | None = None
        self._reference: Reference | None = None
        self._flusher = RollupFlusher(self.redis, settings.slo_flush_interval_s)
        self._cache: tuple[float, slo.Counts] | None = None
        self._reader = slo.CountsReader()

    async def start(self) -> None:
        self._flusher.start()

    async def stop(self) -> None:
        await self._flusher.stop()
        await self.redis.aclose()

    @property
    def reference(self) -> Reference | None:
        """The production model's drift reference, re-read when the alias is re-pointed."""
        try:
            stamp = self._aliases.stat().st_mtime
        except OSError:
            stamp = None
        if self._reference is None or stamp != self._reference_stamp:
            self._reference = slo.load_reference(self._models_dir, self._model_name)
            self._reference_stamp = stamp
        return self._reference

    async def read_counts(self, now: float) -> slo.Counts:
        """Window counts, reused for 0.5 s: many open dashboards cost one read per process."""
        if self._cache and now - self._cache[0] < 0.5:
            return self._cache[1]
        counts = await self._reader.read(self.redis, now)
        self._cache = (now, counts)
        return counts


def install(app: FastAPI) -> None:
    """The request-metrics middleware; call once in `create_app`."""
    app.add_middleware(MetricsMiddleware)


async def start(app: FastAPI, settings: ApiSettings) -> Observability:
    observability = Observability(settings)
    app.state.observability = observability
    await observability.start()
    return observability
