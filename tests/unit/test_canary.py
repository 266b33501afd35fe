"""The canary's statistics and routing (`training.canary`, `BatchRunner.model_for`), pure."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from common.contract import JobKind, JobSpec, PredictMessage
from training.canary import (
    Latency,
    VersionScore,
    difference_interval,
    is_right,
    judge,
    scores,
    wilson,
)
from workers.inference import BatchRunner, canary_draw
from workers.model import ModelRef


def test_intervals_match_the_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80
    diff, low, high = difference_interval(VersionScore("a", 70, 56), VersionScore("b", 80, 48))
    assert diff == pytest.approx(0.2) and low == pytest.approx(0.0524, abs=1e-4)
    assert high == pytest.approx(0.3339, abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)  # never a zero-width 0 %
    assert wilson(0, 0) == (0.0, 1.0)


def test_the_verdict_needs_enough_reviews_and_a_clear_interval() -> None:
    better, worse = VersionScore("4", 60, 54), VersionScore("3", 60, 36)
    assert judge(better, worse).decision == "promote"
    assert judge(worse, better).decision == "reject"
    close = VersionScore("4", 60, 40)
    assert judge(close, VersionScore("3", 60, 38)).decision == "wait"
    few = judge(VersionScore("4", 10, 10), VersionScore("3", 10, 0), min_reviews=30)
    assert few.decision == "wait" and "need 30" in few.reason


def test_a_more_accurate_candidate_is_promoted_only_with_no_worse_latency() -> None:
    better, worse = VersionScore("4", 60, 54), VersionScore("3", 60, 36)
    same = Latency(0.050, 0.048, "test")
    assert judge(better, worse, latency=same).decision == "promote"
    slower = judge(better, worse, latency=Latency(0.090, 0.048, "test"))
    assert slower.decision == "reject" and "slower" in slower.reason
    unknown = judge(better, worse, latency=Latency(None, 0.048, "Prometheus down"))
    assert unknown.decision == "wait" and "latency unknown (Prometheus down)" in unknown.reason
    # a worse candidate is rejected on accuracy whatever its speed
    assert judge(worse, better, latency=Latency(0.01, 0.05, "test")).decision == "reject"
    assert judge(better, worse, latency=Latency(0.090, 0.048, "t"), tolerance=2).decision == (
        "promote"
    )


def test_scores_per_version_with_no_digit_answers() -> None:
    records = [
        {"model_version": "3", "label": 7, "verdict": "digit", "model_digit": 7},
        {"model_version": "3", "label": 1, "verdict": "digit", "model_digit": 7},
        {"model_version": "4", "label": None, "verdict": "no_digit", "model_digit": None},
        {"model_version": "4", "label": None, "verdict": "no_digit", "model_digit": 2},
        {"label": 3, "verdict": "digit", "model_digit": 3},  # before canaries: not counted
    ]
    assert is_right(records[2]) and not is_right(records[3])
    assert scores(records) == {"3": VersionScore("3", 2, 1), "4": VersionScore("4", 2, 1)}


def _model(version: str) -> SimpleNamespace:
    return SimpleNamespace(info=ModelRef("mnist_cnn", version, Path(".")))


def test_the_canary_takes_its_share_of_messages_and_keeps_each() -> None:
    runner = BatchRunner(_model("3"), None, max_batch_size=8, review_threshold=0.8)  # type: ignore[arg-type]
    message = PredictMessage([JobSpec("job-0", JobKind.DIGITS, 1)], "", 0.0)
    assert runner.model_for(message).info.version == "3"  # no canary loaded
    runner.canary, runner.canary_share = _model("4"), 0.25  # type: ignore[assignment]
    served = []
    for i in range(4000):
        message = PredictMessage([JobSpec(f"{i:032x}", JobKind.DIGITS, 1)], "", 0.0)
        served.append(runner.model_for(message).info.version)
        assert runner.model_for(message).info.version == served[-1]  # a redelivery agrees
    assert served.count("4") / len(served) == pytest.approx(0.25, abs=0.03)
    assert 0.0 <= canary_draw("x") < 1.0


def test_version_metrics_count_each_version_apart() -> None:
    from prometheus_client import REGISTRY

    from workers import metrics
    from workers.inference import BatchStats
    from workers.results import WriteReport

    def sample(name: str, version: str) -> float:
        return REGISTRY.get_sample_value(name, {"version": version}) or 0.0

    def record(stats: BatchStats) -> None:
        metrics.record_batch(stats, {"jobs": [], "enqueued_at": 0.0}, 256)

    before = sample("digits_version_images_total", "canary-test")
    record(BatchStats(5, 0.01, 0.0, WriteReport(1, 0), "canary-test", flagged=2))
    record(BatchStats(3, 0.02, 0.0, WriteReport(1, 0), "other-test"))
    assert sample("digits_version_images_total", "canary-test") == before + 5
    assert sample("digits_version_needs_review_total", "canary-test") >= 2
    assert sample("digits_version_model_seconds_count", "other-test") >= 1
