"""One Celery message -> one model call over all its images -> one outcome per job."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded

from common.contract import JobKind, JobSpec, JobStatus, PredictMessage, decode_images, job_key
from common.decoding import PostcodeDirectory
from common.postcode import assemble, digits_to_review
from common.reviews import review_id
from workers.model import DigitModel
from workers.results import Outcome, ResultWriter, ReviewRecord, WriteReport

log = logging.getLogger(__name__)

NO_DIGIT = "no_digit_found"
LOW_CONFIDENCE = "low_confidence"


@dataclass(frozen=True)
class BatchStats:
    images: int
    model_seconds: float
    queue_wait_seconds: float
    report: WriteReport
    model_version: str = ""
    """The version that ran this batch (production or the canary)."""
    flagged: int = 0
    """Review items the batch produced."""


def predictions(probabilities: np.ndarray, blank: set[int], threshold: float) -> list[dict]:
    """The public shape of each image's answer (README: HTTP contract), for one job."""
    digits = probabilities.argmax(axis=1).tolist()
    confidences = probabilities.max(axis=1).tolist()
    rounded = np.round(probabilities.astype(np.float64), 6).tolist()  # one pass, not per value
    answers = []
    for index, (digit, confidence, probs) in enumerate(
        zip(digits, confidences, rounded, strict=True)
    ):
        if index in blank:
            answers.append(
                {
                    "digit": None,
                    "confidence": 0.0,
                    "probabilities": None,
                    "needs_review": True,
                    "reason": NO_DIGIT,
                }
            )
            continue
        answer = {
            "digit": digit,
            "confidence": probs[digit],
            "probabilities": probs,
            "needs_review": confidence < threshold,
        }
        if answer["needs_review"]:
            answer["reason"] = LOW_CONFIDENCE
        answers.append(answer)
    return answers


def review_items(
    job: JobSpec, outcome: Outcome, images: np.ndarray, threshold: float
) -> list[ReviewRecord]:
    """One review item per flagged image, pointing at its place in the job's answer."""
    if outcome.status != JobStatus.DONE:
        return []
    if job.kind is JobKind.POSTCODE:
        # a flagged code queues its least confident digit(s) (`digits_to_review`); the
        # review index counts digits across the job's codes, as the images do
        places = []
        for g, code in enumerate(outcome.body["postcodes"]):
            chosen = set(digits_to_review(code, threshold))
            for k, digit in enumerate(code["digits"]):
                places.append(
                    (["postcodes", g, "digits", k], {**digit, "needs_review": k in chosen})
                )
    else:
        places = [(["predictions", i], p) for i, p in enumerate(outcome.body["predictions"])]
    items = []
    for index, (path, answer) in enumerate(places):
        if not answer.get("needs_review") or index >= len(images):
            continue
        fields = {
            "job_id": job.id,
            "kind": str(job.kind),
            "index": index,
            "path": path,
            "model_digit": answer.get("digit"),
            "model_version": outcome.body.get("model_version"),
            "confidence": answer.get("confidence"),
            "reason": answer.get("reason", LOW_CONFIDENCE),
        }
        items.append(
            ReviewRecord(review_id(job.id, index), job_key(job.id), fields, images[index].tobytes())
        )
    return items


def canary_draw(job_id: str) -> float:
    """A job id's fixed point in [0, 1): the canary takes the messages below its share."""
    return int.from_bytes(hashlib.blake2b(job_id.encode(), digest_size=8).digest()) / 2**64


class BatchRunner:
    def __init__(
        self,
        model: DigitModel,
        writer: ResultWriter,
        *,
        max_batch_size: int,
        review_threshold: float,
        postcode_review_threshold: float | None = None,
        directory: PostcodeDirectory | None = None,
        on_predictions: Callable[[list[dict]], None] | None = None,
        on_postcodes: Callable[[list[dict]], None] | None = None,
        canary_share: float = 0.0,
    ) -> None:
        self.model = model
        self.canary: DigitModel | None = None
        """The candidate version serving `canary_share` of the messages (None: no canary)."""
        self.canary_share = canary_share
        self.writer = writer
        self.max_batch_size = max_batch_size
        self.review_threshold = review_threshold
        """Single digits, on the calibrated confidence; also picks a flagged code's digits."""
        self.postcode_review_threshold = (
            review_threshold if postcode_review_threshold is None else postcode_review_threshold
        )
        """Postal codes, on the whole code's probability."""
        self.directory = directory
        self._on_predictions = on_predictions
        self._on_postcodes = on_postcodes

    def run(self, payload: dict) -> BatchStats:
        message = PredictMessage.from_dict(payload)
        model = self.model_for(message)  # once per batch: a reload swaps models between batches
        queue_wait = max(0.0, time.time() - message.enqueued_at)
        ids = [job.id for job in message.jobs]
        self.writer.mark_running(ids)
        started = time.perf_counter()
        try:
            images = decode_images(message.images)
            expected = sum(job.n for job in message.jobs)
            if len(images) != expected:
                raise ValueError(f"message carries {len(images)} images for {expected}")
            probabilities = self._predict(model, images)
        except Exception as exc:  # the whole batch failed: every job says so explicitly
            log.exception("batch failed", extra={"job_ids": ids})
            timed_out = isinstance(exc, SoftTimeLimitExceeded)
            code = "timed_out" if timed_out else "inference_failed"
            text = "the batch ran past DIGITS_TASK_SOFT_TIME_LIMIT_S" if timed_out else str(exc)
            outcomes = [self._failed(job, code, text) for job in message.jobs]
            report = self.writer.finish(outcomes, message.reply_to)
            return BatchStats(0, 0.0, queue_wait, report, model.info.version)
        model_seconds = time.perf_counter() - started
        outcomes, reviews, offset = [], [], 0
        for job in message.jobs:
            outcome = self._outcome(job, probabilities[offset : offset + job.n], model)
            outcomes.append(outcome)
            reviews += review_items(
                job, outcome, images[offset : offset + job.n], self.review_threshold
            )
            offset += job.n
        report = self.writer.finish(outcomes, message.reply_to)
        self.writer.add_reviews(reviews)
        self.writer.report_batch_seconds(time.perf_counter() - started)
        log.info(
            "batch done",
            extra={
                "job_ids": ids,
                "images": len(images),
                "model_ms": round(model_seconds * 1e3, 3),
            },
        )
        return BatchStats(
            len(images), model_seconds, queue_wait, report, model.info.version, len(reviews)
        )

    def model_for(self, message: PredictMessage) -> DigitModel:
        """Production, or the canary for its share of messages: drawn from the first job's id,
        so a redelivered message is served by the same version."""
        canary = self.canary
        if canary is None or self.canary_share <= 0 or not message.jobs:
            return self.model
        return canary if canary_draw(message.jobs[0].id) < self.canary_share else self.model

    def _predict(self, model: DigitModel, images: np.ndarray) -> np.ndarray:
        chunks = [
            model.predict(images[i : i + self.max_batch_size])
            for i in range(0, len(images), self.max_batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, 10), dtype=np.float32)

    def _outcome(
        self, job: JobSpec, probabilities: np.ndarray, model: DigitModel | None = None
    ) -> Outcome:
        model = model or self.model
        try:
            blank = set(job.meta.get("blank", ()))
            answers = predictions(probabilities, blank, self.review_threshold)
            if self._on_predictions:
                self._on_predictions(answers)
            body: dict[str, Any] = {
                "id": job.id,
                "status": str(JobStatus.DONE),
                "kind": str(job.kind),
                "model_version": model.info.version,
            }
            if job.kind is JobKind.POSTCODE:
                body.update(self._postcodes(job, probabilities))
            else:
                body["predictions"] = answers
            return Outcome(job.id, str(JobStatus.DONE), body)
        except Exception as exc:  # one bad job fails alone, not its batch
            log.exception("job failed", extra={"job_id": job.id})
            return self._failed(job, "job_failed", str(exc))

    def _postcodes(self, job: JobSpec, probabilities: np.ndarray) -> dict:
        codes, offset = [], 0
        for group in job.meta["groups"]:
            count = group["count"]
            codes.append(
                assemble(
                    probabilities[offset : offset + count],
                    group["boxes"],
                    expected_length=group.get("length"),
                    threshold=self.postcode_review_threshold,
                    doubtful=group.get("doubtful", False),
                    segmentation=group.get("segmentation", ()),
                    directory=self.directory,
                )
            )
            offset += count
        if self._on_postcodes:
            self._on_postcodes(codes)
        # A single code is also given at the top level: the common case reads naturally.
        return {"postcodes": codes, **(codes[0] if len(codes) == 1 else {})}

    def _failed(self, job: JobSpec, code: str, message: str) -> Outcome:
        body = {
            "id": job.id,
            "status": str(JobStatus.FAILED),
            "kind": str(job.kind),
            "error": {"code": code, "message": message},
        }
        return Outcome(job.id, str(JobStatus.FAILED), body)
