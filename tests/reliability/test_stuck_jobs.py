"""No job stays `running`: time limits, a give-up of the result write, a message acknowledged
without a result. Each ends `done` (re-sent by the sweeper) or explicitly `failed`."""

from __future__ import annotations

import os
import signal
import time

import pytest

from common.contract import QUEUE_BULK, WORKER_HEARTBEAT_KEY, job_key
from common.jobstate import PENDING_KEY
from harness.processes import RedisServer, group_pids, job_ids_by_status, wait_for_job, wait_until
from tests.reliability.conftest import batch_body
from tests.reliability.test_worker_loss import running_on, submit_with_backlog

pytestmark = pytest.mark.integration

FINAL = {"done", "failed", "reviewed"}
LIMITS = {"DIGITS_TASK_SOFT_TIME_LIMIT_S": "4", "DIGITS_TASK_TIME_LIMIT_S": "5"}
"""Short limits for API and worker alike: the sweeper's `running` limit is then 5 + 3 s."""


def test_a_job_running_on_a_live_worker_past_the_time_limit_is_resent(make_stack, digits):
    # The state a result write that gave up leaves (or any message acknowledged without a
    # result): `running`, on a worker that is alive and heartbeating, and no message anywhere.
    stack = make_stack(DIGITS_SWEEP_INTERVAL_S="0.5")  # DIGITS_TASK_TIME_LIMIT_S: the default 25 s
    store = stack.redis.client()
    with stack.http() as http:
        job_id = http.post("/v1/jobs", json=batch_body(digits[0][:3])).json()["id"]  # no worker
        store.delete(QUEUE_BULK)  # its message is gone
        long_ago = time.time() - 100
        store.hset(
            job_key(job_id),
            mapping={"status": "running", "started_by": "alive:1", "started_at": long_ago},
        )
        store.zadd(PENDING_KEY, {job_id: long_ago})
        stack.add_worker(wait=False)

        def final_while_alive_beats() -> dict | None:
            store.zadd(WORKER_HEARTBEAT_KEY, {"alive:1": time.time()})  # the "live" worker
            body = http.get(f"/v1/jobs/{job_id}").json()
            return body if body["status"] in FINAL else None

        body = wait_until(final_while_alive_beats, 60, "the stuck job to be re-sent and done")
    assert body["status"] == "done", body
    assert len(body["predictions"]) == 3
    assert store.hget(job_key(job_id), "attempts") == b"2"
    assert "running past the time limit" in stack.api.log_path.read_text(errors="replace")


def stop_pool_mid_batch(store, ids: list[str], pool_pid: int) -> str:
    """SIGSTOP the pool process while it holds a batch; the id of a job it has `running`."""

    def stopped_holding() -> str | None:
        wait_until(lambda: running_on(store, ids, [pool_pid]), 30, "a batch in flight", 0.005)
        os.kill(pool_pid, signal.SIGSTOP)
        name = f"{os.uname().nodename}:{pool_pid}"
        for job_id in ids:
            status, by = store.hmget(job_key(job_id), "status", "started_by")
            if status == b"running" and by.decode() == name:
                return job_id
        os.kill(pool_pid, signal.SIGCONT)  # it finished just before the stop: try again
        return None

    return wait_until(stopped_holding, 60, "a pool process stopped mid-batch")


@pytest.mark.slow
def test_a_result_write_that_gives_up_does_not_leave_the_job_running(make_stack, digits):
    aof = ("--appendonly", "yes", "--appendfsync", "always")
    stack = make_stack(*aof, DIGITS_SWEEP_INTERVAL_S="0.5", **LIMITS)
    worker = stack.add_worker(
        DIGITS_WORKER_CONCURRENCY="1",
        DIGITS_RESULT_WRITE_RETRY_S="1",
        DIGITS_WORKER_REDIS_TIMEOUT_S="1",
        **LIMITS,
    )
    store = stack.redis.client()
    ids = submit_with_backlog(stack, worker, digits[0][:256], 40)
    pool_pid = next(pid for pid in group_pids(worker.pid) if pid != worker.pid)
    victim = stop_pool_mid_batch(store, ids, pool_pid)

    # Redis goes away while the batch's answer is computed: the write retries for
    # DIGITS_RESULT_WRITE_RETRY_S (1 s), then gives up and the task fails (Celery acknowledges it).
    port = stack.redis.port
    stack.redis.process.signal(signal.SIGKILL)
    stack.redis.process.proc.wait(5)
    os.kill(pool_pid, signal.SIGCONT)
    wait_until(
        lambda: "result write gave up" in worker.log_path.read_text(errors="replace"),
        20,
        "the result write to give up",
        0.1,
    )
    stack.redis = RedisServer(port, *aof)
    back_at = time.monotonic()
    store = stack.redis.client()

    # The job was left `running` on a worker that is alive: only the time limit recovers it.
    groups = wait_until(
        lambda: (g := job_ids_by_status(store, ids)) and set(g) <= FINAL and g,
        40,
        "every job to end after the failed write",
        0.2,
    )
    recovered_s = time.monotonic() - back_at
    assert set(groups) == {"done"}, groups
    assert recovered_s < 30, recovered_s
    assert worker.alive(), worker.log_tail()
    print(f"result write gave up: job {victim} done {recovered_s:.1f} s after Redis came back")


@pytest.mark.slow
def test_a_batch_past_its_soft_time_limit_ends_explicitly(make_stack, digits):
    limits = {"DIGITS_TASK_SOFT_TIME_LIMIT_S": "2", "DIGITS_TASK_TIME_LIMIT_S": "30"}
    stack = make_stack(DIGITS_SWEEP_INTERVAL_S="0.5", **limits)
    worker = stack.add_worker(
        DIGITS_WORKER_CONCURRENCY="1", DIGITS_RESULT_WRITE_RETRY_S="1", **limits
    )
    store = stack.redis.client()
    ids = submit_with_backlog(stack, worker, digits[0][:256], 40)
    pool_pid = next(pid for pid in group_pids(worker.pid) if pid != worker.pid)
    victim = stop_pool_mid_batch(store, ids, pool_pid)  # a hang, as far as Celery can tell
    wait_until(
        lambda: "Soft time limit" in worker.log_path.read_text(errors="replace"),
        20,
        "Celery to signal the soft time limit",
        0.1,
    )
    os.kill(pool_pid, signal.SIGCONT)
    with stack.http() as http:
        body = wait_for_job(http, victim, timeout=40)
    # Failed with `timed_out` where the limit hit the model call, re-sent by the sweeper
    # (and done) where it hit Celery's bookkeeping or the result write.
    assert body["status"] == "done" or body["error"]["code"] == "timed_out", body
    wait_until(lambda: set(job_ids_by_status(store, ids)) <= FINAL, 40, "all jobs to end", 0.2)
    assert worker.alive()
