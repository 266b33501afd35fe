"""The job state scripts on a real Redis: first result wins, duplicates are counted and dropped."""

from __future__ import annotations

import orjson
import pytest

from common.contract import job_key
from common.jobstate import PENDING_KEY
from harness.processes import RedisServer
from workers.results import Outcome, ResultWriter


@pytest.fixture(scope="module")
def server():
    own = RedisServer()  # its own: flushing the session's Redis would drop Celery's bindings
    yield own
    own.stop()


@pytest.fixture()
def store(server):
    client = server.client()
    yield client
    client.flushdb()


def new_job(store, job_id: str) -> None:
    store.hset(job_key(job_id), mapping={"status": "queued", "input": b"x" * 784})
    store.zadd(PENDING_KEY, {job_id: 1.0})


def outcome(job_id: str, digit: int) -> Outcome:
    return Outcome(
        job_id, "done", {"id": job_id, "status": "done", "predictions": [{"digit": digit}]}
    )


def test_first_result_wins_and_duplicates_are_counted(store):
    writer = ResultWriter(store, "test:1")
    new_job(store, "a")
    writer.mark_running(["a"])
    assert store.hget(job_key("a"), "status") == b"running"
    assert store.hget(job_key("a"), "started_by") == b"test:1"

    first = writer.finish([outcome("a", 3)], reply_to=None)
    second = writer.finish([outcome("a", 8)], reply_to=None)

    assert (first.written, first.duplicates) == (1, 0)
    assert (second.written, second.duplicates) == (0, 1)
    body = orjson.loads(store.hget(job_key("a"), "body"))
    assert body["predictions"][0]["digit"] == 3
    assert store.hget(job_key("a"), "input") is None  # the input is dropped once answered
    assert store.zscore(PENDING_KEY, "a") is None


def test_an_expired_job_is_not_recreated(store):
    writer = ResultWriter(store, "test:1")
    report = writer.finish([outcome("gone", 1)], reply_to=None)
    assert (report.written, report.duplicates) == (0, 0)
    assert not store.exists(job_key("gone"))


def test_one_publish_per_batch_carries_every_written_job(store):
    writer = ResultWriter(store, "test:1")
    for job_id in ("p", "q"):
        new_job(store, job_id)
    pubsub = store.pubsub()
    pubsub.subscribe("digits:results:api-1")
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    writer.finish([outcome("p", 1), outcome("q", 2)], reply_to="api-1")
    message = pubsub.get_message(timeout=2)
    assert message and message["type"] == "message"
    assert [body["id"] for body in orjson.loads(message["data"])] == ["p", "q"]
    assert pubsub.get_message(timeout=0.2) is None
