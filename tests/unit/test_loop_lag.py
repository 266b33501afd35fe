"""Admission refuses sync work while the API process's own event loop runs late."""

from __future__ import annotations

import asyncio
import time

import pytest

from api.errors import ServiceUnavailable
from api.serving.admission import Admission, Backlog, LoopLag


async def _measure(load) -> LoopLag:
    lag = LoopLag(interval_s=0.02)
    lag.periodic.start()
    await asyncio.sleep(0.1)
    assert lag.lag_s < 0.05  # an idle loop is on time
    await load()
    await lag.periodic.stop()
    return lag


async def _saturated() -> None:
    """A saturated process: the loop is busy 80 ms out of every 80, for a second."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        time.sleep(0.08)
        await asyncio.sleep(0)


async def _one_long_decode() -> None:
    time.sleep(0.3)  # one slow request, then the loop is free again
    await asyncio.sleep(0.4)


def test_a_saturated_loop_is_measured():
    assert asyncio.run(_measure(_saturated)).lag_s >= 0.05


def test_one_long_step_is_not_taken_for_saturation():
    assert asyncio.run(_measure(_one_long_decode)).lag_s < 0.05


def test_sync_requests_are_refused_while_the_loop_lags():
    async def scenario():
        admission = Admission(None, sync_budget_s=1.5, max_bulk_messages=10, worker_stale_s=10)
        admission.state = Backlog(workers=2, read_at=time.time())
        await admission.check_sync()  # healthy: admitted
        admission.lag.lag_s = 0.8
        with pytest.raises(ServiceUnavailable) as refused:
            await admission.check_sync()
        return refused.value

    refusal = asyncio.run(scenario())
    assert refusal.code == "overloaded" and refusal.headers["Retry-After"] == "1"
