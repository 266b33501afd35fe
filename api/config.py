"""The API process's settings, from the environment."""

from __future__ import annotations

from pydantic import Field

from common.settings import ServiceSettings


class ApiSettings(ServiceSettings):
    api_host: str = "0.0.0.0"
    api_port: int = 8000
    api_workers: int = Field(1, ge=1)
    """uvicorn worker processes; each has its own batcher and result listener."""
    max_batch_images: int = Field(256, ge=1)
    """Images accepted in one request; more is a 413."""
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    """Request bodies larger than this (declared or streamed) are a 413."""
    max_image_pixels: int = Field(40_000_000, ge=784)
    """Decoded width x height allowed per image; bigger is refused before decoding."""
    max_batch_size: int = Field(256, ge=1)
    """Images coalesced into one Celery message from concurrent requests of this process."""
    max_batch_delay_ms: float = Field(2.0, ge=0.0)
    """How long the first request of a message waits for company before it is sent."""
    sync_wait_max_s: float = Field(2.0, gt=0.0)
    """The synchronous contract: `wait` is capped at this; later answers become 202."""
    redis_timeout_s: float = Field(0.4, gt=0.0)
    """Connect/read timeout to Redis: with Redis down, submissions fail (503) within this."""
    worker_stale_s: float = Field(10.0, gt=0.0)
    """A worker whose last heartbeat is older than this does not count for /readyz."""
    sweep_interval_s: float = Field(2.0, gt=0.0)
    """How often unfinished jobs are checked for a lost worker (see api/sweeper.py)."""
    sweep_queued_grace_s: float = Field(10.0, gt=0.0)
    max_attempts: int = Field(3, ge=1)
    """Times a job is sent to a worker before it fails with `worker_lost`."""
    api_keys: str = ""
    """Comma-separated keys; when set, /v1/* needs `Authorization: Bearer <key>` or `X-API-Key`."""

    @property
    def api_key_set(self) -> frozenset[str]:
        return frozenset(key.strip() for key in self.api_keys.split(",") if key.strip())
