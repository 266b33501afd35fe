"""Admission refuses sync work while the API process's own event loop runs late."""

from __future__ import annotations

import asyncio
import time

import pytest

from api.admission import Admission, LoopLag, QueueState
from api.errors import ServiceUnavailable


async def _blocked_loop_lag(block_s: float) -> LoopLag:
    lag = LoopLag(interval_s=0.02)
    lag.loop.start()
    await asyncio.sleep(0.1)
    assert lag.lag_s < block_s / 2  # an idle loop is on time
    time.sleep(block_s)  # the CPU-saturated process: nothing else runs meanwhile
    await asyncio.sleep(0.1)
    await lag.loop.stop()
    return lag


def test_a_blocked_loop_is_measured():
    lag = asyncio.run(_blocked_loop_lag(0.3))
    assert lag.lag_s >= 0.2


def test_sync_requests_are_refused_while_the_loop_lags():
    async def scenario():
        admission = Admission(None, sync_budget_s=1.5, max_bulk_messages=10, worker_stale_s=10)
        admission.state = QueueState(workers=2, read_at=time.time())
        await admission.check_sync()  # healthy: admitted
        admission.lag.lag_s = 0.8
        with pytest.raises(ServiceUnavailable) as refused:
            await admission.check_sync()
        return refused.value

    refusal = asyncio.run(scenario())
    assert refusal.code == "overloaded" and refusal.headers["Retry-After"] == "1"
