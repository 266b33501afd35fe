"""One job can be followed through the JSON logs: API enqueue line -> worker batch line."""

from __future__ import annotations

import json

import pytest

from harness.processes import wait_until
from tests.observability.support import DIGIT7_PNG, predict

pytestmark = pytest.mark.integration


def _lines_about(path, job_id: str) -> list[dict]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if job_id not in line or not line.startswith("{"):
            continue
        entry = json.loads(line)  # every line about a job is one JSON object
        if entry.get("job_id") == job_id or job_id in entry.get("job_ids", ()):
            found.append(entry)
    return found


def test_a_job_id_joins_api_and_worker_log_lines(stack):
    with stack.client() as client:
        response = predict(client, DIGIT7_PNG, "image/png")
    assert response.status_code == 200
    job_id = response.json()["id"]

    api_lines = wait_until(
        lambda: _lines_about(stack.api.log_path, job_id), 10, "an API log line with the job id"
    )
    worker_lines = wait_until(
        lambda: _lines_about(stack.worker.log_path, job_id), 10, "a worker line with the job id"
    )
    assert {line["service"] for line in api_lines} == {"api"}
    assert any(line["message"] == "enqueued" for line in api_lines)
    done = [line for line in worker_lines if line["message"] == "batch done"]
    assert len(done) == 1 and done[0]["service"] == "worker"
    assert done[0]["images"] >= 1
