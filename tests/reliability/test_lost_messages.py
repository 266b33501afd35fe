"""Messages lost on the way to a worker come back in seconds, whatever the backlog behind them.

Two losses the visibility timeout cannot fix in time: a message BRPOP took off the queue for
a worker that lost its network as the reply came (in no list and not in `unacked`), and the
messages a worker held, not yet started, when it was SIGKILLed (in `unacked` for minutes).
Each test keeps a backlog waiting on the queue throughout, so recovery cannot come from the
queues running empty; and afterwards no `unacked` entry is left to run a job a second time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from common.contract import QUEUE_BULK, job_key
from common.jobstate import PENDING_KEY
from common.queueing import UNACKED_KEY
from harness.processes import group_pids, job_ids_by_status, wait_until
from tests.reliability.test_worker_loss import submit_bulk

pytestmark = pytest.mark.integration

BACKLOG = 30


def pool_pids(worker) -> list[int]:
    return [pid for pid in group_pids(worker.pid) if pid != worker.pid]


def stop_pool(worker) -> list[int]:
    """SIGSTOP the pool processes only: the main process goes on taking messages it then
    cannot run, so the queue moves while the backlog stays."""
    pids = pool_pids(worker)
    assert pids, "the worker has no pool process"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


def resume(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def attempts(store, job_id: str) -> int:
    return int(store.hget(job_key(job_id), "attempts") or 1)


def held(store, ids: list[str], holder: str) -> list[str]:
    """The jobs of `ids` still `queued` and held by `holder` (taken, not started)."""
    pipe = store.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(job_key(job_id), "status", "held_by")
    rows = pipe.execute()
    return [i for i, row in zip(ids, rows, strict=True) if row == [b"queued", holder.encode()]]


def test_a_message_popped_and_lost_is_resent_while_the_backlog_waits(make_stack, digits):
    stack = make_stack(DIGITS_SWEEP_INTERVAL_S="0.5")
    worker = stack.add_worker(DIGITS_WORKER_CONCURRENCY="1")
    store = stack.redis.client()
    holder = f"{os.uname().nodename}:{worker.pid}"
    stopped = stop_pool(worker)
    try:
        # The main process takes one message (prefetch 1) that its stopped pool cannot run,
        # then takes no more: what follows stays on the queue.
        first = submit_bulk(stack, digits[0][:8], 1)
        wait_until(lambda: held(store, first, holder), 30, "the first message held")
        (lost,) = submit_bulk(stack, digits[0][:3], 1)
        # As a worker whose network went as BRPOP returned: off the queue, held by no one.
        assert store.rpop(QUEUE_BULK) is not None
        assert store.llen(QUEUE_BULK) == 0
        # Queued before the message already taken (instead of waiting out the margin).
        store.zadd(PENDING_KEY, {lost: time.time() - 30})
        backlog = submit_bulk(stack, digits[0][:8], BACKLOG)
        wait_until(lambda: attempts(store, lost) == 2, 15, "the lost job to be re-sent")
        waiting = store.llen(QUEUE_BULK)
        assert waiting >= BACKLOG, waiting  # re-sent while the whole backlog still waited
    finally:
        resume(stopped)
    ids = [lost, *first, *backlog]
    wait_until(lambda: set(job_ids_by_status(store, ids)) == {"done"}, 60, "every job done", 0.2)
    with stack.http() as http:
        assert len(http.get(f"/v1/jobs/{lost}").json()["predictions"]) == 3
    assert "its message was taken off the queue and lost" in stack.api.log_path.read_text(
        errors="replace"
    )


def test_messages_held_by_a_killed_worker_are_resent_in_seconds_not_minutes(make_stack, digits):
    stack = make_stack(DIGITS_SWEEP_INTERVAL_S="0.5")
    victim = stack.add_worker(DIGITS_WORKER_CONCURRENCY="2")  # DIGITS_VISIBILITY_TIMEOUT_S: 300 s
    store = stack.redis.client()
    holder = f"{os.uname().nodename}:{victim.pid}"
    stop_pool(victim)
    ids = submit_bulk(stack, digits[0][:8], BACKLOG)

    # Prefetch 2 (two pool processes): the main process holds two messages it never starts.
    victim_holds = wait_until(
        lambda: jobs if len(jobs := held(store, ids, holder)) == 2 else None,
        30,
        "the victim to hold two unstarted messages",
    )
    assert store.hlen(UNACKED_KEY) == 2
    os.killpg(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(
        lambda: all(attempts(store, i) == 2 for i in victim_holds),
        20,
        "the held jobs to be re-sent",
    )
    recovered_s = time.monotonic() - killed_at
    assert store.llen(QUEUE_BULK) >= BACKLOG - 2  # no worker: the backlog still waits
    # The dead worker's copies are gone: nothing is restored after the visibility timeout.
    assert store.hlen(UNACKED_KEY) == 0
    assert recovered_s < 15, recovered_s
    stack.add_worker(wait=False, DIGITS_WORKER_CONCURRENCY="1")
    wait_until(lambda: set(job_ids_by_status(store, ids)) == {"done"}, 60, "every job done", 0.2)
    wait_until(lambda: store.hlen(UNACKED_KEY) == 0, 10, "every message acknowledged")
    assert all(attempts(store, i) == 1 for i in set(ids) - set(victim_holds))
