"""Hot reload in one process: the watcher follows the alias, loads the real model versions,
keeps the old one when the new one cannot load, and a batch answers with the version that ran."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from common import registry
from common.contract import JobKind, JobSpec, PredictMessage, encode_images
from harness.processes import ROOT, wait_until
from workers.inference import BatchRunner
from workers.model import DigitModel
from workers.reload import AliasWatcher
from workers.results import WriteReport

NAME = "mnist_cnn"


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    """Versions 2 and 3 of the committed model (what the workers read), production = 3."""
    for version in ("2", "3"):
        target = tmp_path / NAME / version
        target.mkdir(parents=True)
        for file_name in ("model.onnx", "metadata.json"):
            shutil.copy(ROOT / "models" / NAME / version / file_name, target / file_name)
    registry.write_aliases(tmp_path, NAME, {"production": 3})
    return tmp_path


def watcher(models: Path, switched: list[DigitModel], interval_s: float = 0.05) -> AliasWatcher:
    return AliasWatcher(
        models,
        NAME,
        "production",
        "3",
        load=lambda version: DigitModel.load(models, NAME, version),
        on_switch=switched.append,
        interval_s=interval_s,
    )


def test_a_moved_alias_loads_the_new_version_and_a_still_one_does_nothing(models: Path) -> None:
    switched: list[DigitModel] = []
    watch = watcher(models, switched)
    assert watch.check() is None  # nothing moved
    registry.write_aliases(models, NAME, {"production": 3, "candidate": 2})
    assert watch.check() is None  # the file changed, the served alias did not
    registry.write_aliases(models, NAME, {"production": 2})
    model = watch.check()
    assert model is not None and model.info.version == "2"
    assert [m.info.version for m in switched] == ["2"] and watch.current_version == "2"
    assert watch.check() is None
    registry.write_aliases(models, NAME, {"production": 3})  # roll back
    assert watch.check().info.version == "3"


def test_a_version_that_fails_to_load_keeps_the_old_one_serving(models: Path) -> None:
    broken = models / NAME / "4"
    shutil.copytree(models / NAME / "3", broken)
    (broken / "model.onnx").write_bytes(b"not a model")
    switched: list[DigitModel] = []
    watch = watcher(models, switched)
    registry.write_aliases(models, NAME, {"production": 4})
    assert watch.check() is None and watch.current_version == "3" and switched == []
    registry.write_aliases(models, NAME, {"production": 9})  # no such folder
    assert watch.check() is None and watch.current_version == "3"
    registry.write_aliases(models, NAME, {"production": 2})
    assert watch.check().info.version == "2"


def test_the_background_thread_switches_and_stops(models: Path) -> None:
    switched: list[DigitModel] = []
    watch = watcher(models, switched)
    watch.start()
    try:
        registry.write_aliases(models, NAME, {"production": 2})
        wait_until(lambda: switched, 10, "the watcher to load version 2")
    finally:
        watch.stop()
    assert not watch._thread.is_alive()
    v2, v3 = switched[0], DigitModel.load(models, NAME, "3")
    image = np.random.default_rng(0).integers(0, 255, (4, 28, 28), dtype=np.uint8)
    # two real versions: the switch changes the answers, not just a label
    assert not np.allclose(v2.predict(image), v3.predict(image))


class _Writer:
    """Collects what BatchRunner writes (no Redis)."""

    def __init__(self) -> None:
        self.outcomes: list = []

    def mark_running(self, ids: list[str]) -> None:
        pass

    def finish(self, outcomes: list, reply_to: str | None) -> WriteReport:
        self.outcomes += outcomes
        return WriteReport(len(outcomes), 0)

    def add_reviews(self, items: list) -> tuple[int, int]:
        return len(items), 0

    def report_batch_seconds(self, seconds: float) -> None:
        pass


def test_a_switch_during_a_batch_takes_effect_at_the_next_one(models: Path) -> None:
    v3, v2 = DigitModel.load(models, NAME, "3"), DigitModel.load(models, NAME, "2")
    writer = _Writer()
    runner = BatchRunner(v3, writer, max_batch_size=2, review_threshold=0.5)  # type: ignore[arg-type]
    real_predict = v3.predict

    def predict_then_switch(images: np.ndarray) -> np.ndarray:
        runner.model = v2  # what the watcher thread does, here mid-batch
        return real_predict(images)

    v3.predict = predict_then_switch  # type: ignore[method-assign]
    images = np.random.default_rng(1).integers(0, 255, (4, 28, 28), dtype=np.uint8)
    message = PredictMessage(
        [JobSpec("a", JobKind.DIGITS, 2), JobSpec("b", JobKind.DIGITS, 2)],
        encode_images(images),
        time.time(),
    )
    runner.run(message.to_dict())  # three model calls, the first one switches
    v3.predict = real_predict  # type: ignore[method-assign]
    runner.run(message.to_dict())
    first, second = writer.outcomes[:2], writer.outcomes[2:]
    assert [o.body["model_version"] for o in first] == ["3", "3"]
    assert [o.body["model_version"] for o in second] == ["2", "2"]
    served = [p["probabilities"] for o in first for p in o.body["predictions"]]
    assert np.allclose(served, v3.predict(images), atol=1e-5)
