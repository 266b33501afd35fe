"""A worker killed mid-batch loses nothing: every accepted job completes within 30 s."""

from __future__ import annotations

import os
import signal
import time

import pytest

from harness.processes import group_pids, job_ids_by_status, wait_until
from tests.reliability.conftest import batch_body

pytestmark = pytest.mark.integration


def submit_bulk(stack, images, count: int) -> list[str]:
    body = batch_body(images)
    with stack.http() as http:
        responses = [http.post("/v1/jobs", json=body) for _ in range(count)]
    assert all(r.status_code == 202 for r in responses), responses[-1].text
    return [r.json()["id"] for r in responses]


def submit_with_backlog(stack, worker, images, count: int) -> list[str]:
    """Queue the jobs while the worker is stalled, so it is busy for a while once resumed."""
    worker.signal(signal.SIGSTOP)
    try:
        return submit_bulk(stack, images, count)
    finally:
        worker.signal(signal.SIGCONT)


def running_on(redis_client, ids: list[str], pids: list[int]) -> bool:
    """True once one of `ids` is running in one of `pids` (so the kill lands mid-batch)."""
    names = {f"{os.uname().nodename}:{pid}" for pid in pids}
    pipe = redis_client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(f"digits:job:{job_id}", "status", "started_by")
    return any(
        status == b"running" and (by or b"").decode() in names for status, by in pipe.execute()
    )


def test_sigkill_of_a_whole_worker_mid_batch_loses_nothing(make_stack, digits):
    stack = make_stack()
    victim = stack.add_worker(DIGITS_WORKER_CONCURRENCY="1")
    ids = submit_with_backlog(stack, victim, digits[0][:256], 120)
    store = stack.redis.client()
    wait_until(lambda: running_on(store, ids, group_pids(victim.pid)), 30, "a batch in flight")
    victim.signal(signal.SIGKILL)  # main process and pool: nothing gets to clean up
    killed_at = time.monotonic()
    stack.add_worker(wait=False, DIGITS_WORKER_CONCURRENCY="1")  # the restarted replacement

    def all_done():
        groups = job_ids_by_status(store, ids)
        return set(groups) == {"done"}

    wait_until(all_done, 30, "every job to complete after the kill", interval=0.2)
    assert time.monotonic() - killed_at < 30
    with stack.http() as http:
        body = http.get(f"/v1/jobs/{ids[0]}").json()
    assert len(body["predictions"]) == 256


def test_sigkill_of_a_pool_process_requeues_its_batch(make_stack, digits):
    stack = make_stack()
    worker = stack.add_worker(DIGITS_WORKER_CONCURRENCY="2")
    ids = submit_with_backlog(stack, worker, digits[0][:256], 120)
    store = stack.redis.client()
    children = [pid for pid in group_pids(worker.pid) if pid != worker.pid]

    def busy_child() -> int | None:
        """A pool process holding a batch right now (both are kept busy by the backlog)."""
        return next((pid for pid in children if running_on(store, ids, [pid])), None)

    os.kill(wait_until(busy_child, 30, "a batch in a pool process"), signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: set(job_ids_by_status(store, ids)) == {"done"}, 30, "all jobs done", 0.2)
    assert time.monotonic() - killed_at < 30
    assert worker.alive()  # Celery replaced the pool process; the worker itself carried on
