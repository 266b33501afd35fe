"""One prefix, one meaning per knob (issue 17): every setting is read from `DIGITS_<NAME>`; the
names from before the prefix still work, with a warning, only while the new one is unset.
MAX_BATCH_SIZE is the API's images per message, MODEL_BATCH_SIZE the worker's images per model
call; the old shared name still reaches the worker as a deprecated name."""

from __future__ import annotations

import warnings

import pytest

from api.config import ApiSettings
from common import environment
from workers.config import WorkerSettings

NAMES = (
    "REDIS_URL",
    "MAX_BATCH_SIZE",
    "MODEL_BATCH_SIZE",
    "API_PORT",
    "WORKER_NODE_NAME",
)


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(environment.prefixed(name), raising=False)


def test_settings_are_read_from_the_prefixed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITS_REDIS_URL", "redis://new:1/0")
    monkeypatch.setenv("DIGITS_API_PORT", "8123")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        settings = ApiSettings()
    assert (settings.redis_url, settings.api_port) == ("redis://new:1/0", 8123)


def test_an_old_name_still_works_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://old:1/0")
    with pytest.warns(DeprecationWarning, match="set DIGITS_REDIS_URL"):
        assert WorkerSettings().redis_url == "redis://old:1/0"


def test_the_prefixed_name_wins_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://old:1/0")
    monkeypatch.setenv("DIGITS_REDIS_URL", "redis://new:1/0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ApiSettings().redis_url == "redis://new:1/0"


def test_an_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITS_API_PORT", "8123")
    assert ApiSettings(api_port=9000).api_port == 9000


def test_the_model_batch_has_its_own_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings().model_batch_size == 256
    monkeypatch.setenv("DIGITS_MODEL_BATCH_SIZE", "32")
    monkeypatch.setenv("DIGITS_MAX_BATCH_SIZE", "512")  # the API's: not the worker's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert WorkerSettings().model_batch_size == 32
        assert ApiSettings().max_batch_size == 512


def test_the_old_shared_batch_name_still_reaches_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAX_BATCH_SIZE", "64")
    with pytest.warns(DeprecationWarning, match="set DIGITS_MODEL_BATCH_SIZE"):
        assert WorkerSettings().model_batch_size == 64
    monkeypatch.setenv("MODEL_BATCH_SIZE", "16")  # its own old name comes first
    with pytest.warns(DeprecationWarning, match="MODEL_BATCH_SIZE is deprecated"):
        assert WorkerSettings().model_batch_size == 16


def test_programs_without_a_settings_class_read_the_same_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert environment.read("WORKER_NODE_NAME", "default") == "default"
    monkeypatch.setenv("WORKER_NODE_NAME", "celery@old")
    with pytest.warns(DeprecationWarning, match="set DIGITS_WORKER_NODE_NAME"):
        assert environment.read("WORKER_NODE_NAME", "") == "celery@old"
    monkeypatch.setenv("DIGITS_WORKER_NODE_NAME", "celery@new")
    assert environment.read("WORKER_NODE_NAME", "") == "celery@new"


def test_a_limit_error_quotes_the_prefixed_names() -> None:
    with pytest.raises(ValueError, match="DIGITS_TASK_SOFT_TIME_LIMIT_S must be below"):
        WorkerSettings(task_soft_time_limit_s=30, task_time_limit_s=25)
