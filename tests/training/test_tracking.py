"""MLflow tracking and registry over the folder repository (`training.tracking`), against a
throw-away SQLite store and copies of the committed model versions: one run per version with
its parameters, metrics and files; aliases moved in MLflow by the gate and exported to
aliases.json; the registry exported into a fresh repository the workers could read."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common import registry
from harness.processes import ROOT
from training.data import file_sha256
from training.tracking import FOLDER_TAG, SOURCE_TAG, Tracker

NAME = "mnist_cnn"


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    """Versions 2 and 3 of the committed model, production = 3 (as in models/)."""
    root = tmp_path / "models"
    for version in ("2", "3"):
        shutil.copytree(ROOT / "models" / NAME / version, root / NAME / version)
    registry.write_aliases(root, NAME, {"production": 3})
    return root


@pytest.fixture()
def tracker(mlflow_store: str) -> Tracker:
    return Tracker(mlflow_store)


def test_import_logs_one_run_per_version_and_mirrors_the_aliases(
    tracker: Tracker, models: Path
) -> None:
    assert tracker.import_folders(models, NAME) == [2, 3]
    assert tracker.import_folders(models, NAME) == []  # idempotent
    mapping = tracker.folder_map(NAME)
    assert set(mapping) == {2, 3}
    assert tracker.mlflow_aliases(NAME) == {"production": mapping[3]}

    client = tracker.client
    mv = client.get_model_version(NAME, mapping[3])
    assert mv.tags[FOLDER_TAG] == "3"
    run = client.get_run(mv.run_id)
    metadata = registry.read_metadata(models, NAME, 3)
    assert run.data.tags[SOURCE_TAG] == "import"
    assert run.data.params["architecture"] == "wide"
    assert run.data.params["epochs"] == "15"
    assert run.data.params["synthetic.font_digits"] == "50000"
    assert run.data.metrics["test_accuracy"] == metadata["metrics"]["test_accuracy"]
    assert run.data.metrics["robustness.codes"] == metadata["robustness"]["sets"]["codes"]
    assert run.data.metrics["calibration.temperature"] > 0
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["mnist"]
    losses = client.get_metric_history(run.info.run_id, "epoch.loss")
    assert [m.step for m in losses] == list(range(15))
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert files == {"model", "confusion_matrix.json", "confusion_matrix.png"}
    model_files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "model")}
    assert model_files == {"model.keras", "model.onnx", "metadata.json", "MODEL_CARD.md"}


def test_the_gate_moves_mlflow_aliases_and_exports_them(tracker: Tracker, models: Path) -> None:
    with pytest.raises(registry.PromotionRefusedError, match="worse than production"):
        tracker.promote(models, NAME, 2)  # 99.29 % vs 99.70 %
    mapping = tracker.folder_map(NAME)
    assert tracker.mlflow_aliases(NAME) == {"production": mapping[3]}
    assert registry.read_aliases(models, NAME) == {"production": 3}

    report = tracker.promote(models, NAME, 2, force=True)
    assert report.changed == {"production": (3, 2)}
    assert tracker.mlflow_aliases(NAME) == {"production": mapping[2]}
    assert registry.read_aliases(models, NAME) == {"production": 2}

    tracker.set_alias(models, NAME, "candidate", 3)
    assert registry.read_aliases(models, NAME) == {"production": 2, "candidate": 3}
    version, _ = tracker.rollback(models, NAME)
    assert version == 3 and registry.read_aliases(models, NAME)["production"] == 3


def test_export_writes_the_registry_into_a_fresh_repository(
    tracker: Tracker, models: Path, tmp_path: Path
) -> None:
    tracker.import_folders(models, NAME)
    fresh = tmp_path / "fresh"
    report = tracker.export(fresh, NAME)
    assert report.written == [2, 3]  # folder numbers kept, not renumbered
    assert registry.read_aliases(fresh, NAME) == {"production": 3}
    for version in (2, 3):
        for path in (models / NAME / str(version)).iterdir():
            assert file_sha256(fresh / NAME / str(version) / path.name) == file_sha256(path)
    assert tracker.export(fresh, NAME).written == []


def test_a_version_registered_elsewhere_gets_the_next_folder(
    tracker: Tracker, models: Path
) -> None:
    """As a training on another machine would leave it: a run with the files, a registered
    version without a folder tag; the export gives it a number and records it."""
    tracker.import_folders(models, NAME)
    client = tracker.client
    run = client.create_run(tracker.experiment_id(NAME))
    client.log_artifacts(run.info.run_id, str(models / NAME / "2"), "model")
    mv = client.create_model_version(NAME, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(NAME, "candidate", mv.version)
    report = tracker.export(models, NAME)
    assert report.written == [4]
    assert registry.read_aliases(models, NAME) == {"production": 3, "candidate": 4}
    assert client.get_model_version(NAME, mv.version).tags[FOLDER_TAG] == "4"


def test_a_corrupt_artifact_is_never_published(tracker: Tracker, models: Path) -> None:
    client = tracker.client
    bad = models.parent / "bad"
    shutil.copytree(models / NAME / "2", bad)
    (bad / "model.onnx").write_bytes(b"tampered")
    tracker.import_folders(models, NAME)
    run = client.create_run(tracker.experiment_id(NAME))
    client.log_artifacts(run.info.run_id, str(bad), "model")
    client.create_model_version(NAME, f"runs:/{run.info.run_id}/model", run.info.run_id)
    with pytest.raises(registry.RegistryError, match="sha256"):
        tracker.export(models, NAME)
    assert registry.versions(models, NAME) == [2, 3]
    assert not list((models / NAME).glob(".staging-*"))


def test_an_empty_store_never_takes_an_alias_away(tracker: Tracker, models: Path) -> None:
    assert tracker.export(models, NAME).aliases == {"production": 3}
    assert registry.read_aliases(models, NAME) == {"production": 3}


def test_cli_import_promote_rollback(models: Path, mlflow_store: str) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "training", "registry", *args, "--models-dir", str(models)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    imported = cli("import-mlflow")
    assert imported.returncode == 0, imported.stderr
    assert "[2, 3]" in imported.stdout
    assert cli("promote", "2").returncode == 2  # the gate
    moved = cli("promote", "2", "--force")
    assert moved.returncode == 0 and "production -> version 2" in moved.stdout
    assert json.loads((models / NAME / "aliases.json").read_text()) == {"production": "2"}
    back = cli("rollback")
    assert back.returncode == 0 and "production -> version 3" in back.stdout
    tracker = Tracker(mlflow_store)
    assert tracker.mlflow_aliases(NAME) == {"production": tracker.folder_map(NAME)[3]}
