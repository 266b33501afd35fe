"""The batching logic on both sides of the queue, in-process with fakes (issue 17): fast,
and with random inputs, so out-of-order or cross-request mistakes show.

The process-level tests (tests/integration, tests/reliability) run the same classes against
real Redis and real workers; these pin down the logic itself in milliseconds:
- `api.serving.dispatch.Dispatcher` coalesces concurrent requests into messages: every job in
  exactly one message, images in their job's order, a batch's failure reaching every
  request of that batch and no other, and the breaker after a failed enqueue;
- `workers.inference.BatchRunner` splits a message back into answers: each job gets the
  answers of its own images, whatever the chunking, and a failing model call fails every
  job of the batch explicitly.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from api.errors import ServiceUnavailable
from api.serving.dispatch import UNAVAILABLE_HOLD_S, Dispatcher
from common.contract import (
    QUEUE_BULK,
    QUEUE_INTERACTIVE,
    JobSpec,
    JobStatus,
    PredictMessage,
    decode_images,
    encode_images,
)
from workers.inference import BatchRunner
from workers.results import WriteReport


def _images(job_index: int, n: int) -> np.ndarray:
    """n images whose first pixel says whose they are: (job index, image index)."""
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 0, 0] = job_index % 256
    images[:, 0, 1] = np.arange(n) % 256
    return images


@dataclass
class FakeStore:
    created: list[str] = field(default_factory=list)
    fail_next: int = 0

    async def create(self, jobs) -> None:
        await asyncio.sleep(0)  # a real store awaits Redis: let others queue up behind it
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("redis went away")
        self.created += [job.spec.id for job in jobs if not job.stored]


@dataclass
class FakeSender:
    messages: list[tuple[str, dict]] = field(default_factory=list)

    def __call__(self, queue: str, payload: dict) -> None:
        self.messages.append((queue, payload))


def _dispatcher(store: FakeStore, send: FakeSender, max_batch_size: int = 16) -> Dispatcher:
    return Dispatcher(
        store, send, reply_to="r", max_batch_size=max_batch_size, max_batch_delay_s=0.001
    )


@pytest.mark.parametrize("seed", range(5))
def test_random_concurrent_requests_each_travel_once_with_their_own_images_in_order(seed):
    rng = random.Random(seed)
    sizes = [rng.randint(1, 9) for _ in range(120)]
    queues = [rng.choice([QUEUE_INTERACTIVE, QUEUE_BULK]) for _ in sizes]
    store, send = FakeStore(), FakeSender()

    async def scenario() -> None:
        dispatcher = _dispatcher(store, send)

        async def one(index: int) -> None:
            await asyncio.sleep(rng.random() * 0.01)
            spec = JobSpec(f"job-{index}", n=sizes[index])
            await dispatcher.submit(spec, _images(index, sizes[index]), queues[index])

        await asyncio.gather(*(one(i) for i in range(len(sizes))))
        await dispatcher.close()

    asyncio.run(scenario())
    seen: dict[str, str] = {}
    for queue, payload in send.messages:
        message = PredictMessage.from_dict(payload)
        images = decode_images(message.images)
        assert len(images) == sum(job.n for job in message.jobs)
        # coalescing stops at the cap, except that a job is never split
        assert len(message.jobs) == 1 or len(images) < 16 + max(job.n for job in message.jobs)
        offset = 0
        for job in message.jobs:
            index = int(job.id.split("-")[1])
            assert job.id not in seen, "a job travelled twice"
            seen[job.id] = queue
            assert queue == queues[index], "a job in the other queue's message"
            own = images[offset : offset + job.n]
            assert (own[:, 0, 0] == index % 256).all(), "images of another request"
            assert (own[:, 0, 1] == np.arange(job.n) % 256).all(), "images out of order"
            offset += job.n
        assert (message.reply_to == "r") == (queue == QUEUE_INTERACTIVE)
    assert sorted(seen) == sorted(f"job-{i}" for i in range(len(sizes)))
    assert sorted(store.created) == sorted(seen)  # stored before it was sent, once


def test_a_failed_enqueue_reaches_every_request_of_its_batch_and_no_other():
    store, send = FakeStore(fail_next=1), FakeSender()

    async def scenario() -> list:
        dispatcher = _dispatcher(store, send, max_batch_size=4)
        first = [
            dispatcher.submit(JobSpec(f"a-{i}", n=1), _images(i, 1), QUEUE_INTERACTIVE)
            for i in range(4)
        ]  # 4 images: one message, the one whose store write fails
        outcomes = await asyncio.gather(*first, return_exceptions=True)
        await asyncio.sleep(UNAVAILABLE_HOLD_S + 0.05)  # past the breaker's hold
        later = await dispatcher.submit(JobSpec("b-0", n=1), _images(9, 1), QUEUE_INTERACTIVE)
        await dispatcher.close()
        return [*outcomes, later]

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, ServiceUnavailable) for o in outcomes[:4]), outcomes
    assert {o.code for o in outcomes[:4]} == {"queue_unavailable"}
    assert outcomes[4] is None  # the next batch, after the hold, goes through
    assert [job["id"] for _, p in send.messages for job in p["jobs"]] == ["b-0"]


def test_after_a_failed_enqueue_new_requests_are_refused_at_once_for_the_hold():
    store, send = FakeStore(fail_next=1), FakeSender()

    async def scenario() -> tuple[float, BaseException | None]:
        dispatcher = _dispatcher(store, send)
        with pytest.raises(ServiceUnavailable):
            await dispatcher.submit(JobSpec("a", n=1), _images(0, 1), QUEUE_INTERACTIVE)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await dispatcher.submit(JobSpec("b", n=1), _images(1, 1), QUEUE_INTERACTIVE)
            error = None
        except ServiceUnavailable as exc:
            error = exc
        await dispatcher.close()
        return loop.time() - started, error

    elapsed, error = asyncio.run(scenario())
    assert isinstance(error, ServiceUnavailable) and elapsed < 0.01
    assert store.created == [] and send.messages == []  # Redis was not even tried


class FakeModel:
    """Probabilities that name the image: digit = its job's first pixel % 10, confident."""

    def __init__(self, version: str = "7", fail: bool = False) -> None:
        self.info = SimpleNamespace(name="fake", version=version)
        self.fail = fail
        self.calls: list[int] = []

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.calls.append(len(images))
        if self.fail:
            raise RuntimeError("the runtime fell over")
        probabilities = np.full((len(images), 10), 0.001, np.float32)
        probabilities[np.arange(len(images)), images[:, 0, 0] % 10] = 0.991
        return probabilities


@dataclass
class FakeWriter:
    outcomes: list = field(default_factory=list)
    running: list[str] = field(default_factory=list)

    def mark_running(self, ids) -> None:
        self.running += list(ids)

    def finish(self, outcomes, reply_to) -> WriteReport:
        self.outcomes += list(outcomes)
        return WriteReport(len(outcomes), 0)

    def add_reviews(self, items) -> tuple[int, int]:
        return len(items), 0

    def report_batch_seconds(self, seconds: float) -> None:
        pass


def _message(sizes: list[int]) -> dict:
    jobs = [JobSpec(f"job-{i}", n=n) for i, n in enumerate(sizes)]
    images = np.concatenate([_images(i, n) for i, n in enumerate(sizes)])
    return PredictMessage(jobs=jobs, images=encode_images(images), enqueued_at=0.0).to_dict()


@pytest.mark.parametrize("seed", range(5))
def test_each_job_gets_the_answers_of_its_own_images_whatever_the_chunking(seed):
    rng = random.Random(seed)
    sizes = [rng.randint(1, 40) for _ in range(rng.randint(1, 12))]
    model, writer = FakeModel(), FakeWriter()
    runner = BatchRunner(
        model, writer, max_batch_size=rng.choice([1, 7, 32, 256]), review_threshold=0.5
    )
    stats = runner.run(_message(sizes))
    assert sum(model.calls) == sum(sizes) and max(model.calls) <= runner.max_batch_size
    assert stats.images == sum(sizes)
    assert [o.job_id for o in writer.outcomes] == [f"job-{i}" for i in range(len(sizes))]
    for index, (outcome, n) in enumerate(zip(writer.outcomes, sizes, strict=True)):
        assert outcome.status == JobStatus.DONE
        digits = [p["digit"] for p in outcome.body["predictions"]]
        assert digits == [index % 256 % 10] * n, f"job {index} got someone else's answers"
        assert outcome.body["model_version"] == "7"


def test_a_failing_model_call_fails_every_job_of_the_batch_explicitly():
    model, writer = FakeModel(fail=True), FakeWriter()
    runner = BatchRunner(model, writer, max_batch_size=8, review_threshold=0.5)
    runner.run(_message([3, 1, 5]))
    assert [o.status for o in writer.outcomes] == [JobStatus.FAILED] * 3
    assert {o.body["error"]["code"] for o in writer.outcomes} == {"inference_failed"}
    assert writer.running == ["job-0", "job-1", "job-2"]  # marked running first
