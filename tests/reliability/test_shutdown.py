"""`docker stop` semantics: SIGTERM drains; nothing accepted is lost."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from harness.processes import job_ids_by_status, wait_until
from tests.reliability.conftest import batch_body

pytestmark = pytest.mark.integration


def test_sigterm_to_a_busy_worker_loses_nothing(make_stack, digits):
    stack = make_stack()
    first = stack.add_worker(DIGITS_WORKER_CONCURRENCY="2")
    with stack.http() as http:
        ids = [
            http.post("/v1/jobs", json=batch_body(digits[0][:256])).json()["id"] for _ in range(80)
        ]
    store = stack.redis.client()
    wait_until(lambda: "done" in job_ids_by_status(store, ids), 30, "work under way")
    first.terminate()
    # Warm shutdown: the batch in hand is finished, the rest goes back to the queue.
    assert first.proc.wait(25) is not None
    stack.add_worker(DIGITS_WORKER_CONCURRENCY="2")
    wait_until(lambda: set(job_ids_by_status(store, ids)) == {"done"}, 30, "all jobs done", 0.2)


def test_sigterm_to_the_api_answers_requests_in_flight(make_stack, digits):
    stack = make_stack()
    worker = stack.add_worker()
    worker.signal(signal.SIGSTOP)  # requests now wait inside the API
    images = digits[0]

    def ask(index: int) -> int:
        with httpx.Client(base_url=stack.url, timeout=10) as http:
            return http.post("/v1/predict", json=batch_body(images[index : index + 1])).status_code

    try:
        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(ask, i) for i in range(12)]
            wait_until(lambda: _waiting_jobs(stack) >= 12, 10, "12 requests in flight")
            stack.api.terminate()
            worker.signal(signal.SIGCONT)
            statuses = [f.result(timeout=15) for f in futures]
    finally:
        worker.signal(signal.SIGCONT)
    assert all(status in (200, 202) for status in statuses), statuses
    # uvicorn re-raises SIGTERM after a clean shutdown, so -15 is the graceful exit status.
    assert stack.api.proc.wait(15) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in stack.api.log_tail()


def _waiting_jobs(stack) -> int:
    return stack.redis.client().zcard("digits:pending")
