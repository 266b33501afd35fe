"""Idempotency that cannot lie: a key names a job only once that job is stored."""

from __future__ import annotations

import signal

import pytest

from harness.processes import wait_for_job
from tests.reliability.conftest import batch_body

pytestmark = pytest.mark.integration


def test_a_retry_after_a_503_during_a_redis_stall_never_gets_a_phantom_job(make_stack, digits):
    # The stall: Redis stopped while a keyed submission is in flight. The API gives up after
    # DIGITS_REDIS_TIMEOUT_S (503); Redis, once resumed, still runs the command it had received.
    # Before the fix that command was the key's SET NX alone: the retry got a 202 with the
    # id of a job never stored (404 forever).
    stack = make_stack(DIGITS_SWEEP_QUEUED_GRACE_S="1", DIGITS_SWEEP_INTERVAL_S="0.5")
    stack.add_worker()
    redis_process = stack.redis.process
    body = batch_body(digits[0][:2])
    with stack.http() as http:
        assert http.post("/v1/predict", json=body).status_code == 200
        for attempt in range(4):
            key = {"Idempotency-Key": f"stall-{attempt}"}
            redis_process.signal(signal.SIGSTOP)
            try:
                refused = http.post("/v1/jobs", json=body, headers=key)
            finally:
                redis_process.signal(signal.SIGCONT)
            assert refused.status_code == 503, refused.text

            retried = http.post("/v1/jobs", json=body, headers=key)
            assert retried.status_code == 202, retried.text
            job_id = retried.json()["id"]
            assert http.get(f"/v1/jobs/{job_id}").status_code == 200  # stored, not a phantom
            # A job stored by the stalled attempt has no message yet: the sweeper sends it.
            assert wait_for_job(http, job_id, timeout=30)["status"] in ("done", "reviewed")
            again = http.post("/v1/jobs", json=body, headers=key)
            assert again.status_code == 202 and again.json()["id"] == job_id
