"""Settings both processes read from the environment, each field `redis_url` from
`DIGITS_REDIS_URL` (the prefix: `common.environment`).

Each process builds exactly one settings object (`api.config.ApiSettings` or
`workers.config.WorkerSettings`), both subclasses of `ServiceSettings`. The unprefixed names
of before (`REDIS_URL`) are still read, with a warning, while the prefixed one is unset.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from common.environment import PREFIX, legacy_value


class DeprecatedNames(PydanticBaseSettingsSource):
    """The names before the prefix: `<FIELD>` (and a class's `old_names`), read only where
    `DIGITS_<FIELD>` is unset; below the prefixed environment, above the defaults."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        old_names = [field_name.upper(), *self._extra_names().get(field_name, ())]
        return legacy_value(field_name, old_names), field_name, False

    def _extra_names(self) -> dict[str, tuple[str, ...]]:
        return getattr(self.settings_cls, "old_names", {})

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(field, field_name)
            if value is not None:
                values[field_name] = value
        return values


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_file=None, extra="ignore", case_sensitive=False
    )
    old_names: ClassVar[dict[str, tuple[str, ...]]] = {}
    """Deprecated names a field is also read from, after its own unprefixed name."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            DeprecatedNames(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Broker and job store. In compose: `redis://:${REDIS_PASSWORD}@redis:6379/0`."""
    result_ttl_s: int = Field(24 * 3600, ge=1)
    """How long job records and results are kept; an expired job id answers 404."""
    sync_result_ttl_s: int = Field(60, ge=1)
    """How long a synchronous answer the API delivered in its 200 stays readable (a client
    may still poll it); bulk jobs, sync requests answered 202 and jobs with reviews keep
    `result_ttl_s`. This is what bounds Redis memory at a steady request rate (README)."""
    review_threshold: float = Field(0.81, ge=0.0, le=1.0)
    """Predictions below this (calibrated) confidence are marked `needs_review` and queued
    for a human. Chosen by `make review-budget` on the robustness dev split: catches 80 % of
    the wrong digits flagging 5 % (README: the review budget)."""
    postcode_review_threshold: float = Field(0.68, ge=0.0, le=1.0)
    """A postal code whose probability (the whole code's, calibrated) is below this is
    marked `needs_review`. Chosen by `make review-budget`: the lowest flagging that catches
    80 % of the wrong codes on the robustness dev split (README: the review budget)."""
    postcode_directory: str = ""
    """Path to a text file of valid postal codes, one per line (empty: no directory). With
    it, a code is read as the most likely valid code (`common.decoding`); loaded once per
    worker process. Only the workers read it; they check it when they start (a missing file
    or a line that is not a code stops `python -m workers` with the file and line)."""
    models_dir: str = "models"
    """The model registry (`models/<name>/<version>/`, aliases in `aliases.json`)."""
    model_name: str = "mnist_cnn"
    log_level: str = "INFO"
    log_json: bool = True
    """One JSON object per log line (job ids included), for log shippers."""
    task_soft_time_limit_s: float = Field(20.0, gt=0.0)
    """Worker: a message still running after this gets Celery's SoftTimeLimitExceeded; its
    jobs fail explicitly (`timed_out`). A batch of 256 images takes ~30 ms: only a hang or a
    result write stuck on Redis gets here."""
    task_time_limit_s: float = Field(25.0, gt=0.0)
    """Worker: hard limit, Celery kills the pool process. API: the sweeper re-sends a job
    still `running` this long (+ its 3 s running grace), even on a live worker, so no job
    stays `running` beyond ≈ this + 5 s whatever happened to its message."""

    @model_validator(mode="after")
    def _limits_in_order(self) -> ServiceSettings:
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError("DIGITS_TASK_SOFT_TIME_LIMIT_S must be below DIGITS_TASK_TIME_LIMIT_S")
        return self
