"""The worker process's settings, from the environment."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from common.settings import ServiceSettings


class WorkerSettings(ServiceSettings):
    old_names: ClassVar[dict[str, tuple[str, ...]]] = {"model_batch_size": ("MAX_BATCH_SIZE",)}

    model_version: str = "production"
    """A version number or an alias from `models/<name>/aliases.json`."""
    model_reload_interval_s: float = Field(1.0, ge=0.0)
    """How often each process checks whether MODEL_VERSION (an alias) moved, to load and warm
    the new version in the background and switch between batches (0: never; workers/reload.py)."""
    canary_share: float = Field(0.0, ge=0.0, le=1.0)
    """Share of messages (interactive and bulk alike) served by CANARY_ALIAS instead of
    MODEL_VERSION, drawn per message from its first job id (0: no canary)."""
    canary_alias: str = "candidate"
    """The alias the canary serves, followed like MODEL_VERSION (absent: no canary)."""
    worker_concurrency: int = Field(1, ge=1)
    """Prefork processes, each with its own model copy. 1 by default: workers scale by replicas,
    and on a host that the API shares, a second pool process per worker measured slower
    (docs/DESIGN.md, "One pool process per worker"); on a host given to workers, one per core."""
    worker_autoscale: str = ""
    """`max,min` for Celery's --autoscale (overrides concurrency when set)."""
    model_batch_size: int = Field(256, ge=1)
    """Images per model call: a bigger message is run in chunks of this size. Was read from
    MAX_BATCH_SIZE, which now means only the API's images per message; that old name still
    sets it, with a warning, while DIGITS_MODEL_BATCH_SIZE is unset (`old_names`)."""
    inference_threads: int = Field(1, ge=1)
    """ONNX Runtime intra-op threads per process (processes already use the cores)."""
    heartbeat_interval_s: float = Field(2.0, gt=0.0)
    worker_metrics_port: int = 9100
    shutdown_grace_s: float = Field(10.0, gt=0.0)
    """Warm shutdown: pool processes still alive this long after SIGTERM are stopped."""
    visibility_timeout_s: int = Field(300, ge=10)
    """Redis transport: an unacknowledged message is redelivered after this (worker host lost)."""
    result_write_retry_s: float = Field(15.0, gt=0.0)
    """A result write failing on a Redis connection error is retried this long (a Redis
    restart must not drop a computed answer); then the task fails and the job is left to the
    API's sweeper (re-sent after TASK_TIME_LIMIT_S). Must end before the soft time limit."""
    worker_redis_timeout_s: float = Field(10.0, gt=0.0)
    """Worker: read timeout of its own Redis client (results, heartbeat, metrics)."""
    max_pending_reviews: int = Field(50_000, ge=0)
    """Review items waiting for a person at most (≈ 2.5 KB each with their job: 125 MB); a
    flagged image beyond it is answered `needs_review` as always but not queued for review."""

    @model_validator(mode="after")
    def _retry_within_limit(self) -> WorkerSettings:
        if self.result_write_retry_s >= self.task_soft_time_limit_s:
            raise ValueError(
                "DIGITS_RESULT_WRITE_RETRY_S must be below DIGITS_TASK_SOFT_TIME_LIMIT_S"
            )
        return self
