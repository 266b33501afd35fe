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
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from common import registry
from common.reviews import LABELLED_KEY
from tests.harness import ROOT, RedisServer, free_port, start_api, start_worker, wait_for_workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "mnist_cnn"


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    for version in ("2", "3"):
        shutil.copytree(ROOT / "models" / NAME / version, tmp_path / NAME / version)
    registry.write_aliases(tmp_path, NAME, {"production": 2, "candidate": 3})
    return tmp_path


@pytest.fixture()
def stack(models: Path) -> Iterator[tuple[str, str]]:
    server = RedisServer()
    # every answer flagged (threshold 1.0), so each version gets reviews quickly
    env = {"MODELS_DIR": str(models), "REVIEW_THRESHOLD": "1.0"}
    worker = start_worker(
        server.url, name="canary-worker", WORKER_CONCURRENCY="2", CANARY_SHARE="0.5", **env
    )
    api = None
    try:
        wait_for_workers(server.url, count=2)
        port = free_port()
        api = start_api(server.url, port, name="canary-api", **env)
        yield f"http://127.0.0.1:{port}", server.url
    finally:
        if api is not None:
            api.stop()
        worker.stop()
        server.stop()


def judge(models: Path, redis_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "training", "canary", "judge", "--redis-url", redis_url]
    command += ["--models-dir", str(models), "--min-reviews", "15", "--no-mlflow", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def review_all(http: httpx.Client, agree_with: str) -> int:
    """Label every pending item: the model's digit where `agree_with` answered, else another."""
    done = 0
    while items := http.get("/v1/reviews", params={"limit": 200}).json()["items"]:
        for item in items:
            digit = item["model_digit"]
            label = digit if item["model_version"] == agree_with else (digit + 1) % 10
            response = http.post(f"/v1/reviews/{item['id']}", json={"label": label})
            assert response.status_code == 200, response.text
            done += 1
    return done


def test_reviewed_accuracy_per_version_decides_the_promotion(
    stack: tuple[str, str], models: Path
) -> None:
    url, redis_url = stack
    noise = np.random.default_rng(7).integers(0, 256, (80, 28, 28), dtype=np.uint8)
    versions = []
    with httpx.Client(base_url=url, timeout=10) as http:
        for image in noise:
            response = http.post("/v1/predict", json={"images": [image.tolist()]})
            assert response.status_code == 200, response.text
            versions.append(response.json()["model_version"])
        assert 20 <= versions.count("3") <= 60, versions  # about half to the candidate
        assert set(versions) == {"2", "3"}

        waiting = judge(models, redis_url)  # nothing reviewed yet
        assert waiting.returncode == 1 and "verdict: wait" in waiting.stdout

        assert review_all(http, agree_with="2") == 80  # people side with production first
        refused = judge(models, redis_url, "--promote")
        assert refused.returncode == 3 and "verdict: reject" in refused.stdout
        assert registry.read_aliases(models, NAME)["production"] == 2

        # a new canary period: the first labels dropped, people now side with the candidate
        redis.Redis.from_url(redis_url).delete(LABELLED_KEY)
        for image in noise:
            assert http.post("/v1/predict", json={"images": [image.tolist()]}).status_code == 200
        assert review_all(http, agree_with="3") == 80
    promoted = judge(models, redis_url, "--promote")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "verdict: promote" in promoted.stdout
    assert registry.read_aliases(models, NAME)["production"] == 3  # through the registry gate
