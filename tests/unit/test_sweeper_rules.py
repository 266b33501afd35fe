"""The sweeper's judgement of one unfinished job (`api.recovery.sweeper.why_lost`), rule by rule.

The integration tests (tests/reliability/test_lost_messages.py, test_worker_loss.py) run the
same rules against real Redis and real workers; these pin each boundary cheaply.
"""

from __future__ import annotations

import pytest

from api.recovery.sweeper import MESSAGE_LOST, TIMED_OUT, WORKER_LOST, SweepPolicy, World, why_lost
from common.contract import QUEUE_BULK, QUEUE_INTERACTIVE

NOW = 1_000_000.0
POLICY = SweepPolicy()


def world(**overrides) -> World:
    base = {
        "now": NOW,
        "live": {"host:101"},
        "hosts": {"host:100"},
        "taken": {},
        "empty": {QUEUE_INTERACTIVE: False, QUEUE_BULK: False},
    }
    return World(**{**base, **overrides})


def job(status: str = "queued", **fields) -> dict:
    record = dict.fromkeys(
        ("started_by", "started_at", "attempts", "held_by", "held_at", "held_tag")
    )
    return {**record, "status": status, "queue": QUEUE_BULK, **fields}


def test_a_running_job_on_a_dead_pool_process_is_lost():
    record = job("running", started_by="host:999", started_at=str(NOW - 4))
    assert why_lost(record, NOW - 4, world(), POLICY) == WORKER_LOST


def test_a_fresh_running_job_is_never_doubted():
    record = job("running", started_by="host:999", started_at=str(NOW - 1))
    assert why_lost(record, NOW - 1, world(), POLICY) is None


def test_a_running_job_on_a_live_worker_is_lost_only_past_the_time_limit():
    record = job("running", started_by="host:101", started_at=str(NOW - 20))
    assert why_lost(record, NOW - 20, world(), POLICY) is None
    record["started_at"] = str(NOW - POLICY.running_limit_s - 1)
    assert why_lost(record, NOW - 40, world(), POLICY) == TIMED_OUT


@pytest.mark.parametrize(
    ("held_by", "held_for", "expected"),
    [
        ("host:100", 1.0, None),  # just taken
        ("host:100", 10.0, None),  # a live worker about to start it
        ("host:100", POLICY.running_limit_s + 1, WORKER_LOST),  # it will never start it
        ("host:200", 1.0, None),  # even a dead holder gets the grace
        ("host:200", POLICY.running_grace_s + 1, WORKER_LOST),  # held by a dead worker
    ],
)
def test_a_held_job_is_lost_when_its_holder_is_dead_or_past_the_limit(held_by, held_for, expected):
    record = job(held_by=held_by, held_at=str(NOW - held_for), held_tag="tag")
    assert why_lost(record, NOW - held_for - 0.01, world(), POLICY) == expected


def test_a_hold_from_before_the_job_was_queued_again_does_not_count():
    # Held by a dead worker, then re-sent (queued at NOW - 5, after the hold): it waits in
    # the queue like any job, judged by how far its queue has been taken.
    record = job(held_by="host:200", held_at=str(NOW - 30), held_tag="old")
    assert why_lost(record, NOW - 5, world(), POLICY) is None


def test_a_job_passed_by_its_queue_was_popped_and_lost():
    queued_at = NOW - 6
    passed = world(taken={QUEUE_BULK: queued_at + POLICY.taken_margin_s + 0.1})
    assert why_lost(job(), queued_at, passed, POLICY) == MESSAGE_LOST
    # ... but not by the other queue, and not within the margin (a slow publish)
    other = world(taken={QUEUE_INTERACTIVE: NOW})
    assert why_lost(job(), queued_at, other, POLICY) is None
    close = world(taken={QUEUE_BULK: queued_at + POLICY.taken_margin_s - 0.1})
    assert why_lost(job(), queued_at, close, POLICY) is None


def test_a_job_waiting_in_a_backlog_is_not_lost_however_old():
    assert why_lost(job(), NOW - 3600, world(), POLICY) is None


def test_an_old_job_whose_queue_is_empty_was_lost():
    empty = world(empty={QUEUE_INTERACTIVE: False, QUEUE_BULK: True})
    assert why_lost(job(), NOW - POLICY.queued_grace_s - 1, empty, POLICY) == WORKER_LOST
    assert why_lost(job(), NOW - POLICY.queued_grace_s + 1, empty, POLICY) is None
    sync = job(queue=QUEUE_INTERACTIVE)  # judged by its own queue, not the other one
    assert why_lost(sync, NOW - POLICY.queued_grace_s - 1, empty, POLICY) is None
