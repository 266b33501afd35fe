"""A canary over real sockets: two worker processes serve production (version 2) and, for half
of the messages, the candidate (version 3); every answer and review item names the version
that computed it; people's labels then decide, through `python -m training canary judge`,
whether the candidate is promoted. The "people" here are this test: they agree with the
candidate and not with production, so the verdict must be promote (and the reverse, reject)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from common import registry
from common.reviews import LABELLED_KEY
from harness.processes import (
    ROOT,
    RedisServer,
    free_port,
    start_api,
    start_worker,
    wait_for_workers,
    wait_until,
)
from tests.observability.prometheus import PrometheusServer, require_prometheus
from tests.observability.support import close

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "mnist_cnn"


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    for version in ("2", "3"):
        shutil.copytree(ROOT / "models" / NAME / version, tmp_path / NAME / version)
    registry.write_aliases(tmp_path, NAME, {"production": 2, "candidate": 3})
    return tmp_path


@dataclass
class Canary:
    url: str
    redis_url: str
    prometheus: PrometheusServer


@pytest.fixture()
def stack(models: Path) -> Iterator[Canary]:
    require_prometheus()
    server = RedisServer()
    port, metrics_port = free_port(), free_port()
    prometheus = PrometheusServer(port, metrics_port)
    # every answer flagged (threshold 1.0), so each version gets reviews quickly
    env = {"DIGITS_MODELS_DIR": str(models), "DIGITS_REVIEW_THRESHOLD": "1.0"}
    worker = start_worker(
        server.url,
        name="canary-worker",
        DIGITS_WORKER_CONCURRENCY="2",
        DIGITS_CANARY_SHARE="0.5",
        DIGITS_WORKER_METRICS_PORT=str(metrics_port),
        **env,
    )
    api = None
    try:
        wait_for_workers(server.url, count=2)
        api = start_api(
            server.url, port, name="canary-api", DIGITS_PROMETHEUS_URL=prometheus.url, **env
        )
        yield Canary(f"http://127.0.0.1:{port}", server.url, prometheus)
    finally:
        if api is not None:
            api.stop()
        worker.stop()
        server.stop()
        prometheus.stop()


def judge(models: Path, redis_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "training", "canary", "judge", "--redis-url", redis_url]
    command += ["--models-dir", str(models), "--min-reviews", "15", "--no-mlflow", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def review_all(http: httpx.Client, agree_with: str, prometheus: PrometheusServer) -> int:
    """Label every pending item: the model's digit where `agree_with` answered, else another.

    As a person would, after looking: the first listing of a version's items creates its
    resolved counters at zero, and a scrape sees them before the first label."""
    done = 0
    while items := http.get("/v1/reviews", params={"limit": 200}).json()["items"]:
        scraped = len(prometheus.query("digits_reviews_resolved_total"))
        wait_until(
            lambda n=scraped: len(prometheus.query("digits_reviews_resolved_total")) >= max(n, 4),
            30,
            "the resolved counters scraped at zero",
            interval=0.2,
        )
        for item in items:
            digit = item["model_digit"]
            label = digit if item["model_version"] == agree_with else (digit + 1) % 10
            response = http.post(f"/v1/reviews/{item['id']}", json={"label": label})
            assert response.status_code == 200, response.text
            done += 1
    return done


def predict_all(http: httpx.Client, images: np.ndarray) -> list[str]:
    """One sync request per image; the version that answered each."""
    versions = []
    for image in images:
        response = http.post("/v1/predict", json={"images": [image.tolist()]})
        assert response.status_code == 200, response.text
        versions.append(response.json()["model_version"])
    return versions


def test_reviewed_accuracy_per_version_decides_the_promotion(stack: Canary, models: Path) -> None:
    noise = np.random.default_rng(7).integers(0, 256, (80, 28, 28), dtype=np.uint8)
    judged = ("--prometheus-url", stack.prometheus.url)
    # Prometheus has seen both versions' counters at zero (as in production, long before
    # traffic), so its windows count the first requests too.
    wait_until(
        lambda: len(stack.prometheus.query("digits_version_images_total == 0")) == 2,
        30,
        "both versions' counters scraped at zero",
        interval=0.2,
    )
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        first = predict_all(http, noise)
        assert 20 <= first.count("3") <= 60, first  # about half to the candidate
        assert set(first) == {"2", "3"}

        waiting = judge(models, stack.redis_url, *judged)  # nothing reviewed yet
        assert waiting.returncode == 1 and "verdict: wait" in waiting.stdout

        # people side with production first
        assert review_all(http, agree_with="2", prometheus=stack.prometheus) == 80
        refused = judge(models, stack.redis_url, "--promote", *judged)
        assert refused.returncode == 3 and "verdict: reject" in refused.stdout
        assert registry.read_aliases(models, NAME)["production"] == 2

        # a new canary period: the first labels dropped, people now side with the candidate
        redis.Redis.from_url(stack.redis_url).delete(LABELLED_KEY)
        second = predict_all(http, noise)
        assert review_all(http, agree_with="3", prometheus=stack.prometheus) == 80

        # The dashboard's numbers per version, from Prometheus, over the last 5 minutes.
        # Every answer was flagged and then reviewed: reviewed = right + wrong, two counters.
        expected = {
            v: {"images": first.count(v) + second.count(v), "right": right.count(v)}
            for v, right in (("2", first), ("3", second))
        }
        for counts in expected.values():
            counts["reviewed"] = counts["needs_review"] = counts["images"]
        series = {"reviewed": 2}
        fields = {"images": "images", "right": "reviewed_right"}
        fields |= {"reviewed": "reviewed", "needs_review": "needs_review"}

        seen: dict = {}

        def per_version() -> dict | None:
            # NOTE: waited on as a whole: a count read once, right after its series appeared,
            # can still carry most of a scrape interval of extrapolation.
            got = http.get("/v1/slo").json()["windows"]["5m"]["versions"]
            seen.clear()
            seen.update({v: {k: got[v][name] for k, name in fields.items()} for v in got})
            agree = set(seen) >= set(expected) and all(
                close(seen[v][k], n, series=series.get(k, 1))
                for v, want in expected.items()
                for k, n in want.items()
            )
            return got if agree else None

        try:
            versions = wait_until(per_version, 60, "per-version numbers in /v1/slo", 0.5)
        except TimeoutError:
            pytest.fail(f"/v1/slo per version: {seen}, expected {expected}")
    # Windowed counts agree within Prometheus' extrapolation (tests/observability: `close`).
    for version, counts in expected.items():
        row = versions[version]
        assert row["review_rate"] == pytest.approx(1.0, abs=0.03)
        accuracy = counts["right"] / counts["images"]
        assert row["reviewed_accuracy"] == pytest.approx(accuracy, abs=0.03)
        low, high = row["reviewed_accuracy_95ci"]
        assert low <= row["reviewed_accuracy"] <= high
        assert row["model_ms_per_image"] > 0 and row["model_seconds_p99_per_message"] > 0

    # Latency compared as read from Prometheus (both versions are the same network, so the
    # tolerance here only keeps a noisy shared machine from deciding; tests/unit pins the rule).
    promoted = judge(models, stack.redis_url, "--promote", *judged, "--latency-tolerance", "10")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "verdict: promote" in promoted.stdout
    assert f"latency from Prometheus at {stack.prometheus.url}" in promoted.stdout
    assert "unknown" not in promoted.stdout
    assert registry.read_aliases(models, NAME)["production"] == 3  # through the registry gate
