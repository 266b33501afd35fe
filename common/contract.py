"""The contract between the API and the workers.

Both sides import this module and nothing else of each other: task and queue
names, the Redis key layout, the 28x28 uint8 image contract and the message
payload. The API sends work by task name, so it never imports the workers.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

IMAGE_SIDE = 28
IMAGE_BYTES = IMAGE_SIDE * IMAGE_SIDE
"""One normalised image: 28x28 uint8, white ink (255) on black (0), as MNIST."""


def _namespace(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", value):
        raise ValueError(
            f"DIGITS_NAMESPACE={value!r}: use 1-32 lowercase letters, digits, '-' or '_', "
            "starting with a letter"
        )
    return value


NAMESPACE = _namespace(os.environ.get("DIGITS_NAMESPACE", "digits"))
"""Every Redis key and Celery queue of this stack starts with it (default `digits`). Two
stacks sharing one Redis (`make run` on a shared host) keep apart by giving each its own:
`DIGITS_NAMESPACE=mine make run`. API and workers of one stack must agree; it is read once,
when this module is imported."""

TASK_PREDICT = "digits.predict"
QUEUE_INTERACTIVE = f"{NAMESPACE}.interactive"
"""Synchronous requests: consumed ahead of bulk work."""
QUEUE_BULK = f"{NAMESPACE}.bulk"
"""Submitted jobs (`POST /v1/jobs`)."""

KEY_PREFIX = NAMESPACE
RESULT_CHANNEL_PREFIX = f"{KEY_PREFIX}:results:"
"""Workers PUBLISH finished jobs on `<prefix><reply_to>`; each API process listens to its own."""
WORKER_HEARTBEAT_KEY = f"{KEY_PREFIX}:workers"
"""Sorted set: worker name -> last heartbeat (unix seconds) of a worker with a loaded model."""
WORKER_PACE_KEY = f"{KEY_PREFIX}:worker-seconds-per-message"
"""Hash: worker name -> recent seconds per message (EWMA), for admission control."""
WORKER_HOST_KEY = f"{KEY_PREFIX}:worker-hosts"
"""Sorted set: a worker's main process (`<hostname>:<pid>`) -> last heartbeat of one of its
pool processes. A message's holder (`held_by`, below) is judged alive by it."""
QUEUE_TAKEN_KEY = f"{KEY_PREFIX}:queue-taken"
"""Hash: queue -> the newest queued-at time (a job's `PENDING_KEY` score) of any message a
worker has taken from that queue. Queues are FIFO, so a job queued well before it, neither
held nor started, was popped and lost on the way (the sweeper re-sends it)."""
QUEUED_IMAGES_KEY = f"{KEY_PREFIX}:queued-images"
"""Hash: queue -> images in its jobs that are `queued` (waiting or held, not started). Kept by
every status change (`common.jobstate`, the API's job store): the work a scaler should see,
whatever the message sizes (KEDA reads it, `deploy/k8s/worker.yaml`)."""
JOB_IDS_HEADER = "digits_job_ids"
"""Message header: the ids of the jobs a `digits.predict` message carries, so a worker can
record which jobs it holds (`held_by`, `held_at`, `held_tag` on each job) without decoding
the body."""


class JobKind(StrEnum):
    DIGITS = "digits"
    POSTCODE = "postcode"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REVIEWED = "reviewed"


FINAL_STATUSES = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.REVIEWED})


def job_key(job_id: str) -> str:
    """Redis hash holding one job: status, kind, result, error, input images."""
    return f"{KEY_PREFIX}:job:{job_id}"


def result_channel(reply_to: str) -> str:
    return f"{RESULT_CHANNEL_PREFIX}{reply_to}"


def encode_images(images: np.ndarray) -> str:
    """(N, 28, 28) uint8 -> base64 text, the form images travel in inside a JSON message."""
    if images.dtype != np.uint8 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"expected (N, 28, 28) uint8, got {images.shape} {images.dtype}")
    return base64.b64encode(np.ascontiguousarray(images).tobytes()).decode("ascii")


def decode_images(data: str | bytes) -> np.ndarray:
    raw = base64.b64decode(data) if isinstance(data, str) else data
    if len(raw) % IMAGE_BYTES:
        raise ValueError(f"image buffer of {len(raw)} bytes is not a multiple of {IMAGE_BYTES}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)


@dataclass
class JobSpec:
    """One client request inside a message: `n` consecutive images of the message's buffer.

    `meta` carries what the worker needs to build the answer: for digits the indices of
    blank images (`{"blank": [..]}`), for postcodes the segmentation of each image.
    """

    id: str
    kind: JobKind = JobKind.DIGITS
    n: int = 1
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": str(self.kind), "n": self.n, "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        return cls(data["id"], JobKind(data["kind"]), int(data["n"]), data.get("meta") or {})


@dataclass
class PredictMessage:
    """The body of one `digits.predict` task: several jobs, one image buffer, one model call."""

    jobs: list[JobSpec]
    images: str
    """base64 of all jobs' images concatenated in job order (see `encode_images`)."""
    enqueued_at: float
    reply_to: str | None = None
    """API instance to notify through `result_channel(reply_to)`; None for polled jobs."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 1,
            "jobs": [job.to_dict() for job in self.jobs],
            "images": self.images,
            "enqueued_at": self.enqueued_at,
            "reply_to": self.reply_to,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictMessage:
        return cls(
            jobs=[JobSpec.from_dict(job) for job in data["jobs"]],
            images=data["images"],
            enqueued_at=float(data["enqueued_at"]),
            reply_to=data.get("reply_to"),
        )
