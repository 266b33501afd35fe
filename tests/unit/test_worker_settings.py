"""One meaning per knob: MAX_BATCH_SIZE is the API's images per message, MODEL_BATCH_SIZE the
worker's images per model call; the old shared name still reaches the worker, with a warning."""

from __future__ import annotations

import warnings

import pytest

from workers.config import WorkerSettings


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAX_BATCH_SIZE", "MODEL_BATCH_SIZE"):
        monkeypatch.delenv(name, raising=False)


def test_the_model_batch_has_its_own_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings().model_batch_size == 256
    monkeypatch.setenv("MODEL_BATCH_SIZE", "32")
    monkeypatch.setenv("MAX_BATCH_SIZE", "512")  # the API's: not the worker's any more
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert WorkerSettings().model_batch_size == 32


def test_the_old_name_still_works_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BATCH_SIZE", "64")
    with pytest.warns(DeprecationWarning, match="MODEL_BATCH_SIZE"):
        assert WorkerSettings().model_batch_size == 64
