"""The refusals the HTTP protocol gives from its own bytes (api/serving/shedding.py) are exactly the
ones admission would give, decided on what is already known: no Redis round trip, no await.

`PredictionService.refusal_now` is what the protocol asks for each sync request's headers;
`admit_sync` must never admit what it refuses, nor refuse what it admits on the same view.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from api.errors import ServiceUnavailable
from api.serving.admission import Admission, Backlog
from api.serving.service import PredictionService

BUDGET_S = 1.5


def _admission(**state) -> Admission:
    admission = Admission(None, sync_budget_s=BUDGET_S, max_bulk_messages=10, worker_stale_s=10)
    admission.state = Backlog(**{"workers": 2, "read_at": time.time(), **state})
    return admission


def _service(admission: Admission, healthy: bool = True, in_flight: int = 0) -> PredictionService:
    listener = SimpleNamespace(healthy=healthy)
    service = PredictionService(None, None, listener, admission, max_in_flight=4)  # type: ignore[arg-type]
    service.in_flight = in_flight
    return service


def test_a_healthy_view_admits():
    assert _service(_admission()).refusal_now() is None


def test_a_queue_beyond_the_budget_is_refused_with_its_expected_wait():
    # 399 queued + this one, 10 ms each, 2 workers: 2.0 s > 1.5 s
    refusal = _service(_admission(interactive=399, seconds_per_message=0.01)).refusal_now()
    assert refusal is not None and refusal.code == "overloaded"
    assert "expected queue wait 2.00s" in refusal.message
    assert refusal.headers == {"Retry-After": "2"}


def test_a_stale_view_is_left_to_the_full_check_which_reads_again():
    old = time.time() - 1.0  # older than two refreshes (0.1 s each)
    assert _admission(interactive=10_000, read_at=old).refusal_now() is None


def test_no_workers_is_never_refused_on_a_cached_view():
    """A worker that just started would be refused for: check_sync reads Redis first."""
    assert _admission(workers=0).refusal_now() is None


def test_a_lagging_loop_is_refused_whatever_the_view():
    admission = _admission(read_at=0.0)
    admission.lag.lag_s = 0.8
    refusal = admission.refusal_now()
    assert refusal is not None and "0.80s behind" in refusal.message


@pytest.mark.parametrize(
    ("healthy", "in_flight", "code"),
    [(False, 0, "results_unavailable"), (True, 4, "overloaded"), (True, 3, None)],
)
def test_the_process_s_own_limits_are_refused_too(healthy, in_flight, code):
    refusal = _service(_admission(), healthy=healthy, in_flight=in_flight).refusal_now()
    assert (refusal.code if refusal else None) == code


@pytest.mark.parametrize(
    ("state", "lag_s", "healthy", "in_flight"),
    [
        ({}, 0.0, True, 0),
        ({"interactive": 399, "seconds_per_message": 0.01}, 0.0, True, 0),
        ({}, 0.8, True, 0),
        ({}, 0.0, False, 0),
        ({}, 0.0, True, 4),
    ],
)
def test_admit_sync_agrees_with_refusal_now_on_a_fresh_view(state, lag_s, healthy, in_flight):
    admission = _admission(**state)
    admission.lag.lag_s = lag_s
    service = _service(admission, healthy=healthy, in_flight=in_flight)
    quick = service.refusal_now()

    async def full() -> ServiceUnavailable | None:
        try:
            await service.admit_sync()
        except ServiceUnavailable as refusal:
            return refusal
        return None

    slow = asyncio.run(full())
    assert (quick and quick.body()) == (slow and slow.body())
