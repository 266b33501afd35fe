"""The scaler's signal is work, not messages: `digits_queue_images` counts the images of jobs
not yet started, however clients chunk them, and returns to 0 once they are done."""

from __future__ import annotations

import pytest

from common.contract import QUEUE_BULK, QUEUE_INTERACTIVE
from harness.processes import job_ids_by_status, wait_until
from tests.deploy.support import gjson_get, keda_triggers
from tests.observability.support import samples, value
from tests.reliability.conftest import batch_body

pytestmark = pytest.mark.integration


def queued_images(stack) -> dict[str, float]:
    scrape = samples(f"{stack.url}/metrics")
    return {
        q: value(scrape, "digits_queue_images", queue=q) for q in (QUEUE_INTERACTIVE, QUEUE_BULK)
    }


def test_queued_images_follow_the_jobs_not_the_messages(make_stack, digits):
    stack = make_stack(DIGITS_SWEEP_INTERVAL_S="0.5")
    store = stack.redis.client()
    with stack.http() as http:
        # No worker: one 24-image job and 24 one-image jobs are the same work.
        one = http.post("/v1/jobs", json=batch_body(digits[0][:24]))
        many = [http.post("/v1/jobs", json=batch_body(digits[0][i : i + 1])) for i in range(24)]
        keyed = http.post(
            "/v1/jobs", json=batch_body(digits[0][:5]), headers={"Idempotency-Key": "scale-1"}
        )
        again = http.post(
            "/v1/jobs", json=batch_body(digits[0][:5]), headers={"Idempotency-Key": "scale-1"}
        )
        responses = [one, *many, keyed, again]
        assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
        assert again.json()["id"] == keyed.json()["id"]  # a retry is not counted twice
        assert queued_images(stack) == {QUEUE_INTERACTIVE: 0, QUEUE_BULK: 24 + 24 + 5}
        # What KEDA reads (deploy/k8s/worker.yaml's valueLocation in this API's /v1/slo).
        slo = http.get("/v1/slo").json()
        read = {t["name"]: gjson_get(slo, t["metadata"]["valueLocation"]) for t in keda_triggers()}
        assert read == {"interactive-images": 0, "bulk-images": 53}
        ids = sorted({r.json()["id"] for r in responses})
        stack.add_worker()
        wait_until(lambda: set(job_ids_by_status(store, ids)) == {"done"}, 60, "all done", 0.2)
        # Sync requests pass through the count too, and leave it at 0.
        assert http.post("/v1/predict", json=batch_body(digits[0][:3])).status_code == 200
    assert queued_images(stack) == {QUEUE_INTERACTIVE: 0, QUEUE_BULK: 0}
