"""Hot reload under load, over real sockets: API -> Redis -> two worker processes serving the
committed model versions. Requests flow while the production alias moves 3 -> 2 and back
(the registry CLI); none fails, the answers switch version, and every answer equals what the
version it names computes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from common import registry
from harness.processes import (
    ROOT,
    RedisServer,
    free_port,
    start_api,
    start_worker,
    wait_for_workers,
    wait_until,
)
from workers.model import DigitModel

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "mnist_cnn"
CLIENTS = 4
IMAGES_PER_REQUEST = 4


@dataclass
class Traffic:
    """Answers in arrival order: (first image index, model_version, probabilities)."""

    answers: list[tuple[int, str, list[list[float]]]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def versions(self) -> list[str]:
        with self.lock:
            return [version for _, version, _ in self.answers]


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    for version in ("2", "3"):
        shutil.copytree(ROOT / "models" / NAME / version, tmp_path / NAME / version)
    registry.write_aliases(tmp_path, NAME, {"production": 3})
    return tmp_path


@pytest.fixture()
def stack(models: Path) -> Iterator[str]:
    server = RedisServer()
    env = {"DIGITS_MODELS_DIR": str(models), "DIGITS_MODEL_RELOAD_INTERVAL_S": "0.2"}
    worker = start_worker(server.url, name="reload-worker", DIGITS_WORKER_CONCURRENCY="2", **env)
    api = None
    try:
        wait_for_workers(server.url, count=2)
        port = free_port()
        api = start_api(server.url, port, name="reload-api", **env)
        yield f"http://127.0.0.1:{port}"
    finally:
        if api is not None:
            api.stop()
        worker.stop()
        server.stop()


def send(url: str, images: np.ndarray, traffic: Traffic, offset: int) -> None:
    """One client: sync requests of distinct digits until told to stop."""
    with httpx.Client(base_url=url, timeout=10) as http:
        i = offset
        while not traffic.stop.is_set():
            start = (i * IMAGES_PER_REQUEST) % (len(images) - IMAGES_PER_REQUEST)
            batch = images[start : start + IMAGES_PER_REQUEST]
            try:
                response = http.post("/v1/predict", json={"images": batch.tolist()})
                body = response.json()
                if response.status_code != 200 or body.get("status") != "done":
                    raise RuntimeError(f"{response.status_code} {response.text[:200]}")
                probs = [p["probabilities"] for p in body["predictions"]]
                with traffic.lock:
                    traffic.answers.append((start, body["model_version"], probs))
            except Exception as exc:  # every failure is counted, none ends the client
                with traffic.lock:
                    traffic.failures.append(repr(exc))
            i += CLIENTS


def settled_on(traffic: Traffic, version: str, after: int, run: int = 40) -> bool:
    """The last `run` answers since index `after` were all served by `version`."""
    tail = traffic.versions()[after:]
    return len(tail) >= run and set(tail[-run:]) == {version}


def move_alias(models: Path, version: int) -> None:
    command = [sys.executable, "-m", "training", "registry", "promote", str(version), "--force"]
    command += ["--no-mlflow", "--models-dir", str(models)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_alias_moves_under_load_without_a_failed_request(
    stack: str, models: Path, mnist_test
) -> None:
    images = mnist_test[0][:2000]
    traffic = Traffic()
    clients = [
        threading.Thread(target=send, args=(stack, images, traffic, k), daemon=True)
        for k in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    try:
        wait_until(lambda: settled_on(traffic, "3", 0), 60, "steady answers from version 3")
        moved_at = len(traffic.versions())
        move_alias(models, 2)
        wait_until(lambda: settled_on(traffic, "2", moved_at), 60, "every worker on version 2")
        back_at = len(traffic.versions())
        move_alias(models, 3)  # roll back = move the alias back
        wait_until(lambda: settled_on(traffic, "3", back_at), 60, "every worker back on 3")
    finally:
        traffic.stop.set()
        for client in clients:
            client.join(15)
    assert traffic.failures == []
    versions = traffic.versions()
    assert versions[0] == "3" and "2" in versions[moved_at:back_at] and versions[-1] == "3"
    # each answer is what the version it names computes: a label never lies about the model
    local = {v: DigitModel.load(models, NAME, v) for v in ("2", "3")}
    for start, version, probs in traffic.answers:
        expected = local[version].predict(images[start : start + IMAGES_PER_REQUEST])
        assert np.allclose(probs, expected, atol=1e-5), (start, version)
