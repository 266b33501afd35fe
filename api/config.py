"""The API process's settings, from the environment."""

from __future__ import annotations

from functools import cached_property

from pydantic import Field

from common.imaging import DEFAULT_MAX_PIXELS
from common.settings import ServiceSettings


class ApiSettings(ServiceSettings):
    api_host: str = "0.0.0.0"
    api_port: int = 8000
    api_workers: int = Field(2, ge=1)
    """uvicorn worker processes, each with its own batcher and result listener (2 measured best
    on 2 cores: 985 vs 858 req/s at 1,000 offered; `make bench`)."""
    max_batch_images: int = Field(256, ge=1)
    """Images accepted in one request; more is a 413."""
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    """Request bodies larger than this (declared or streamed) are a 413."""
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=784)
    """Decoded width x height allowed per image; bigger is refused (413 `too_large`) before
    decoding. Also Pillow's own bomb guard in this process (`common.imaging.set_max_pixels`)."""
    max_batch_size: int = Field(256, ge=1)
    """Images coalesced into one Celery message from concurrent requests of this process."""
    max_batch_delay_ms: float = Field(2.0, ge=0.0)
    """How long the first request of a message waits for company before it is sent."""
    sync_wait_max_s: float = Field(2.0, gt=0.0)
    """The synchronous contract: `wait` is capped at this; later answers become 202."""
    redis_timeout_s: float = Field(0.4, gt=0.0)
    """Connect/read timeout to Redis: with Redis down, submissions fail (503) within this."""
    redis_max_connections: int = Field(64, ge=4)
    """Connections per API process to Redis (requests wait up to DIGITS_REDIS_TIMEOUT_S for one)."""
    worker_stale_s: float = Field(10.0, gt=0.0)
    """A worker whose last heartbeat is older than this does not count for /readyz."""
    sync_budget_s: float = Field(1.5, gt=0.0)
    """Admission: a sync request whose expected queue wait exceeds this is refused (503)."""
    max_loop_lag_s: float = Field(0.5, gt=0.0)
    """Admission: sync requests are refused while this process's event loop runs this late."""
    shed_after_s: float = Field(0.25, gt=0.0)
    """A sync request whose bytes waited this long before this process could read them is
    refused at once (503 `overloaded`, prebuilt in the HTTP protocol: api/serving/shedding.py)."""
    shed_standing_after_s: float = Field(0.02, gt=0.0)
    """The same, while the queue in front of the process stands (every request read for 100 ms
    waited longer than this: CoDel's test, api/serving/shedding.StandingQueue); at most
    DIGITS_SHED_AFTER_S. A burst is let through; a sustained overload is refused in tens of ms."""
    max_in_flight: int = Field(512, ge=1)
    """Admission: sync requests waiting at once in one API process; beyond, 503 at once."""
    max_bulk_messages: int = Field(20_000, ge=1)
    """Admission: bulk submissions are refused (503) while this many batches are queued."""
    sweep_interval_s: float = Field(2.0, gt=0.0)
    """How often unfinished jobs are checked for a lost worker (see api/recovery/sweeper.py)."""
    sweep_queued_grace_s: float = Field(10.0, gt=0.0)
    max_attempts: int = Field(3, ge=1)
    """Times a job is sent to a worker before it fails with `worker_lost`."""
    api_keys: str = ""
    """Comma-separated keys; when set, /v1/* needs `Authorization: Bearer <key>` or `X-API-Key`."""

    @cached_property
    def api_key_set(self) -> frozenset[str]:
        # NOTE: read on every guarded request; built once (it was 1.4 % of the API's CPU).
        return frozenset(key.strip() for key in self.api_keys.split(",") if key.strip())

    # --- observability (api/observability.py) ---
    prometheus_url: str = "http://127.0.0.1:9090"
    """Prometheus' HTTP API, which /v1/slo and /dashboard read (`make run` starts one on
    PROMETHEUS_PORT; compose: http://prometheus:9090). Unreachable: their numbers are unknown."""
    drift_psi_threshold: float = Field(0.2, gt=0.0)
    """Predicted-class PSI above this (with enough samples) is reported as drifting."""
    drift_min_samples: int = Field(200, ge=1)
    """Fewer predictions than this in a window: drift is `insufficient_data`, not judged."""
