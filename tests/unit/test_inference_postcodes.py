"""The worker's postcode answer and review items (`workers.inference`), without Redis."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from common.contract import JobKind, JobSpec
from common.decoding import PostcodeDirectory
from workers.inference import BatchRunner, review_items
from workers.model import ModelRef

BOXES = [[10 * i, 0, 8, 12] for i in range(5)]


def probs(digits: str, tops: list[float]) -> np.ndarray:
    rows = np.zeros((len(digits), 10), np.float32)
    for k, (ch, p) in enumerate(zip(digits, tops, strict=True)):
        rows[k] = (1.0 - p) / 9
        rows[k, int(ch)] = p
    return rows


def runner(directory: PostcodeDirectory | None = None, code_threshold: float = 0.9) -> BatchRunner:
    model = SimpleNamespace(info=ModelRef("mnist_cnn", "9", Path(".")))
    return BatchRunner(
        model,  # type: ignore[arg-type]
        writer=None,  # type: ignore[arg-type]
        max_batch_size=8,
        review_threshold=0.9,
        postcode_review_threshold=code_threshold,
        directory=directory,
    )


def job(count: int = 5, length: int | None = 5, doubtful: bool = False) -> JobSpec:
    group = {
        "count": count,
        "boxes": BOXES[:count],
        "length": length,
        "doubtful": doubtful,
        "segmentation": ["split_touching_digits"] if doubtful else [],
    }
    return JobSpec("job1", JobKind.POSTCODE, count, {"groups": [group]})


def test_postcode_answer_keeps_the_old_fields_and_adds_the_new() -> None:
    spec = job(doubtful=True)
    outcome = runner()._outcome(spec, probs("90210", [0.999] * 5))
    body = outcome.body
    assert body["kind"] == "postcode" and body["model_version"] == "9"
    for key in ("text", "confidence", "needs_review", "reasons", "digits", "postcodes"):
        assert key in body
    assert body["text"] == "90210" and body["decoding"] == "digits"
    assert body["probability"] == body["confidence"] > 0.99
    assert body["doubtful_segmentation"] is True and body["needs_review"] is False
    assert body["segmentation"] == ["split_touching_digits"]
    assert review_items(spec, outcome, np.zeros((5, 28, 28), np.uint8), 0.9) == []


def test_flagged_code_queues_its_least_confident_digit() -> None:
    spec = job()
    outcome = runner()._outcome(spec, probs("90210", [0.99, 0.95, 0.99, 0.93, 0.99]))
    assert outcome.body["needs_review"] and outcome.body["reasons"] == ["low_confidence"]
    images = np.arange(5, dtype=np.uint8)[:, None, None] * np.ones((5, 28, 28), np.uint8)
    (item,) = review_items(spec, outcome, images, 0.9)
    assert item.review_id == "job1-3"
    assert item.fields["path"] == ["postcodes", 0, "digits", 3]
    assert item.fields["model_digit"] == 1 and item.fields["reason"] == "low_confidence"
    assert item.image == images[3].tobytes()


def test_worker_reads_the_directory_code() -> None:
    directory = PostcodeDirectory.from_codes(["90210", "90211", "10001"])
    probabilities = probs("90270", [0.99, 0.99, 0.99, 0.6, 0.99])
    probabilities[3, 1] = 0.39  # second choice 1 at position 3
    probabilities[3] /= probabilities[3].sum()
    body = runner(directory)._outcome(job(), probabilities).body
    assert body["decoding"] == "directory" and body["text"] == "90210"
    assert body["per_digit_text"] == "90270" and body["runner_up"]["text"] == "90211"
    assert body["postcodes"][0]["text"] == "90210"


def test_worker_length_not_in_directory() -> None:
    directory = PostcodeDirectory.from_codes(["90210"])
    body = runner(directory)._outcome(job(count=4, length=None), probs("9021", [0.99] * 4)).body
    assert body["needs_review"] and body["reasons"] == ["length_not_in_directory"]
    assert body["decoding"] == "digits"
