"""MLflow tracking and Model Registry over the folder repository the workers read.

MLflow is the record for training: one run per version (parameters, metrics, the version
folder's files, the confusion matrix), one registered model version per folder version, and
the aliases (`candidate`, `production`). The serving side never imports MLflow: it reads
`models/<name>/<version>/` + aliases.json, which `export` writes from the MLflow registry, as
Triton's MLflow plugin publishes to a model repository. An MLflow model version is tied to
its folder by the tag `folder_version`; the numbers agree when the folders were imported in
order (`import_folders`), and nothing relies on them agreeing.

The embedded default is a SQLite store with an artifact folder under `var/mlflow/`;
`MLFLOW_TRACKING_URI` points at a real server (or another store) instead.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import registry
from training.data import file_sha256

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "var" / "mlflow"
FOLDER_TAG = "folder_version"
"""Model-version tag: the `models/<name>/<N>/` folder this MLflow version is."""
SOURCE_TAG = "digits.source"
"""Run tag: `train` (logged by `make train`) or `import` (an existing folder registered)."""
PREVIOUS_TAG = "digits.previous.{alias}"
"""Registered-model tag: the folder version an alias pointed at before it last moved."""
ARTIFACT_PATH = "model"
"""Where a run keeps the version folder's files (the registered version's source)."""
CANDIDATE = "candidate"


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI`, else the embedded SQLite store under var/mlflow/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DIR / 'mlflow.db'}"


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = value
    return out


def params_of(metadata: dict[str, Any]) -> dict[str, str]:
    """The recipe as MLflow parameters (strings, dotted keys)."""
    data = metadata.get("data") or {}
    arch = metadata.get("architecture") or {}
    code = metadata.get("code") or {}
    flat = _flatten("", metadata.get("parameters") or {}, {})
    flat |= {
        "architecture": arch.get("name"),
        "architecture.params": arch.get("params"),
        "data.source": data.get("source"),
        "data.reference_mnist": data.get("reference_mnist"),
        "data.train_images": data.get("train_images"),
        "data.synthetic_images": data.get("synthetic_images"),
        "data.x_train_sha256": (data.get("sha256") or {}).get("x_train"),
        "reviewed.sha256": (metadata.get("reviewed") or {}).get("sha256"),
        "reviewed.train_examples": (metadata.get("reviewed") or {}).get("train_examples"),
        "code.git_commit": code.get("git_commit"),
        "code.git_dirty": code.get("git_dirty"),
    }
    return {key: str(value)[:6000] for key, value in flat.items() if value is not None}


def metrics_of(metadata: dict[str, Any]) -> dict[str, float]:
    """Every score the version folder records, as MLflow metrics (the final values)."""
    out: dict[str, float] = {}
    m = metadata.get("metrics") or {}
    for key in ("test_accuracy", "test_loss"):
        if m.get(key) is not None:
            out[key] = float(m[key])
    for digit, scores in (m.get("per_class") or {}).items():
        for key in ("precision", "recall"):
            if key in scores:
                out[f"class_{digit}.{key}"] = float(scores[key])
    robustness = metadata.get("robustness") or {}
    for name, score in (robustness.get("sets") or {}).items():
        out[f"robustness.{name}"] = float(score)
    for name, score in ((robustness.get("production") or {}).get("sets") or {}).items():
        out[f"robustness_production.{name}"] = float(score)
    calibration = metadata.get("calibration") or {}
    for key in ("temperature", "ece_before", "ece_after"):
        if calibration.get(key) is not None:
            out[f"calibration.{key}"] = float(calibration[key])
    for key, value in (metadata.get("export_parity") or {}).items():
        out[f"export_parity.{key}"] = float(value)
    if (metadata.get("keras_metrics") or {}).get("test_accuracy") is not None:
        out["keras.test_accuracy"] = float(metadata["keras_metrics"]["test_accuracy"])
    seconds = (metadata.get("training") or {}).get("seconds")
    if seconds is not None:
        out["training.seconds"] = float(seconds)
    reviewed = metadata.get("reviewed") or {}
    if reviewed.get("accuracy") is not None:
        out["reviewed.heldout_accuracy"] = float(reviewed["accuracy"])
    if (reviewed.get("production") or {}).get("accuracy") is not None:
        out["reviewed_production.heldout_accuracy"] = float(reviewed["production"]["accuracy"])
    return out


def dataset_inputs(metadata: dict[str, Any]) -> list[Any]:
    """The run's datasets: MNIST (by its array checksums) and the reviewed examples, if any."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    data = metadata.get("data") or {}
    inputs = []
    if data.get("sha256"):
        digest = hashlib.sha256(json.dumps(data["sha256"], sort_keys=True).encode()).hexdigest()
        mnist = Dataset("mnist", digest[:16], "local", str(data.get("source", "")))
        inputs.append(DatasetInput(mnist, [InputTag("mlflow.data.context", "training")]))
    reviewed = metadata.get("reviewed") or {}
    if reviewed.get("sha256"):
        profile = json.dumps({k: reviewed.get(k) for k in ("train_examples", "heldout_examples")})
        dataset = Dataset(
            "reviewed", reviewed["sha256"][:16], "local", reviewed.get("source", ""), None, profile
        )
        inputs.append(DatasetInput(dataset, [InputTag("mlflow.data.context", "training+gate")]))
    return inputs


def confusion_png(matrix: list[list[int]], cell: int = 36) -> bytes:
    """The confusion matrix as a picture (rows: true digit, columns: predicted), Pillow only."""
    from PIL import Image, ImageDraw

    n = len(matrix)
    size = cell * (n + 1)
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    peak = max((v for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j), default=1)
    for k in range(n):
        draw.text((cell * (k + 1) + cell // 3, cell // 3), str(k), fill="black")
        draw.text((cell // 3, cell * (k + 1) + cell // 3), str(k), fill="black")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            x, y = cell * (j + 1), cell * (i + 1)
            if i == j:
                colour = (200, 230, 200)
            else:  # errors: the more, the redder
                shade = 255 - int(200 * min(1.0, value / max(peak, 1)))
                colour = (255, shade, shade) if value else (250, 250, 250)
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour, outline=(220, 220, 220))
            draw.text((x + 3, y + cell // 3), str(value), fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class ExportReport:
    written: list[int] = field(default_factory=list)
    """Folder versions materialised from MLflow artefacts."""
    aliases: dict[str, int] = field(default_factory=dict)
    """aliases.json as exported."""
    changed: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    """Aliases whose folder target the export moved: alias -> (before, after)."""


class Tracker:
    """One MLflow store (tracking + registry) and the folder repository it exports to."""

    def __init__(self, uri: str | None = None) -> None:
        from mlflow import MlflowClient  # training-side only: never imported by the services

        self.uri = uri or tracking_uri()
        self._artifact_root: str | None = None
        if self.uri.startswith("sqlite:///"):
            db = Path(self.uri.removeprefix("sqlite:///"))
            db.parent.mkdir(parents=True, exist_ok=True)
            self._artifact_root = (db.parent / "artifacts").resolve().as_uri()
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    # -- tracking ---------------------------------------------------------------------------

    def experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(name, artifact_location=self._artifact_root)

    def log_version(self, models_dir: str | Path, name: str, version: int, source: str) -> str:
        """One run with the folder's parameters, metrics and files; registered as a model
        version tagged with its folder. Returns the MLflow version number."""
        from mlflow.entities import Metric, Param, RunTag

        folder = registry.resolve(models_dir, name, version)
        metadata = registry.read_metadata(models_dir, name, version)
        code = metadata.get("code") or {}
        tags = {SOURCE_TAG: source, FOLDER_TAG: str(version)}
        if code.get("git_commit"):
            tags["mlflow.source.git.commit"] = code["git_commit"]
        run = self.client.create_run(
            self.experiment_id(name), tags=tags, run_name=f"{name}-v{version}"
        )
        run_id = run.info.run_id
        try:
            now = int(time.time() * 1000)
            metrics = [Metric(k, v, now, 0) for k, v in metrics_of(metadata).items()]
            history = (metadata.get("training") or {}).get("history") or {}
            for key, values in history.items():
                metrics += [Metric(f"epoch.{key}", float(v), now, i) for i, v in enumerate(values)]
            params = [Param(k, v) for k, v in params_of(metadata).items()]
            for start in range(0, len(params), 100):  # MLflow's batch limits
                self.client.log_batch(run_id, params=params[start : start + 100])
            for start in range(0, len(metrics), 1000):
                self.client.log_batch(run_id, metrics=metrics[start : start + 1000])
            self.client.log_artifacts(run_id, str(folder), ARTIFACT_PATH)
            if inputs := dataset_inputs(metadata):
                self.client.log_inputs(run_id, datasets=inputs)
            matrix = (metadata.get("metrics") or {}).get("confusion_matrix")
            if matrix:
                with tempfile.TemporaryDirectory() as scratch:
                    rows = {"rows": "true digit", "columns": "predicted digit", "matrix": matrix}
                    (Path(scratch) / "confusion_matrix.json").write_text(json.dumps(rows))
                    (Path(scratch) / "confusion_matrix.png").write_bytes(confusion_png(matrix))
                    self.client.log_artifacts(run_id, scratch)
            self.client.log_batch(run_id, tags=[RunTag("mlflow.note.content", _note(metadata))])
            self.client.set_terminated(run_id)
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self._ensure_registered_model(name)
        created = self.client.create_model_version(
            name,
            f"runs:/{run_id}/{ARTIFACT_PATH}",
            run_id,
            tags={FOLDER_TAG: str(version)},
            description=f"models/{name}/{version}/",
        )
        return str(created.version)

    def _ensure_registered_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(
                name, description="Digit CNN; exported to models/<name>/<folder_version>/"
            )

    # -- the registry -----------------------------------------------------------------------

    def folder_map(self, name: str) -> dict[int, str]:
        """folder version -> MLflow version, for the versions tagged with their folder."""
        found: dict[int, str] = {}
        for mv in self.client.search_model_versions(f"name='{name}'"):
            tag = (mv.tags or {}).get(FOLDER_TAG)
            if tag and tag.isdigit():
                found.setdefault(int(tag), str(mv.version))
        return found

    def mlflow_aliases(self, name: str) -> dict[str, str]:
        """alias -> MLflow version (empty when the model is not registered yet)."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_registered_model(name).aliases or {}
        except MlflowException:
            return {}
        return {alias: str(version) for alias, version in found.items()}

    def import_folders(
        self, models_dir: str | Path, name: str, *, below: int | None = None
    ) -> list[int]:
        """Register every folder version MLflow does not know (ascending), then give MLflow
        the aliases aliases.json has and it lacks. Returns the folder versions registered."""
        known = self.folder_map(name)
        added = []
        for version in registry.versions(models_dir, name):
            if version in known or (below is not None and version >= below):
                continue
            known[version] = self.log_version(models_dir, name, version, source="import")
            added.append(version)
        if added or known:
            current = self.mlflow_aliases(name)
            for alias, version in registry.read_aliases(models_dir, name).items():
                if alias not in current and version in known:
                    self.client.set_registered_model_alias(name, alias, known[version])
        return added

    def export(self, models_dir: str | Path, name: str) -> ExportReport:
        """Write the MLflow registry into the folder repository: every registered version
        missing there becomes its folder (checksums verified), then aliases.json."""
        report = ExportReport()
        by_folder: dict[str, int] = {}
        present = set(registry.versions(models_dir, name))
        versions = sorted(
            self.client.search_model_versions(f"name='{name}'"), key=lambda mv: int(mv.version)
        )
        for mv in versions:
            tag = (mv.tags or {}).get(FOLDER_TAG)
            folder = int(tag) if tag and tag.isdigit() else None
            if folder is None or folder not in present:
                folder = self._materialise(models_dir, name, mv, folder)
                report.written.append(folder)
                present.add(folder)
            by_folder[str(mv.version)] = folder
        before = registry.read_aliases(models_dir, name)
        # NOTE: an alias MLflow does not have is kept, never dropped: exporting from an empty
        # or unrelated store must not take `production` away from the workers.
        table = before | {
            alias: by_folder[v] for alias, v in self.mlflow_aliases(name).items() if v in by_folder
        }
        for alias in sorted(set(before) | set(table)):
            if before.get(alias) != table.get(alias):
                report.changed[alias] = (before.get(alias), table.get(alias))
        aliases_file = Path(models_dir) / name / registry.ALIASES_FILE
        if report.changed or not aliases_file.exists():
            registry.write_aliases(models_dir, name, table)
        report.aliases = table
        return report

    def _materialise(self, models_dir: str | Path, name: str, mv: Any, folder: int | None) -> int:
        staged = registry.staging_dir(models_dir, name)
        staged.chmod(0o755)
        try:
            with tempfile.TemporaryDirectory() as scratch:
                if mv.run_id:
                    got = Path(self.client.download_artifacts(mv.run_id, ARTIFACT_PATH, scratch))
                else:
                    from mlflow.artifacts import download_artifacts

                    got = Path(download_artifacts(artifact_uri=mv.source, dst_path=scratch))
                for path in got.iterdir():
                    shutil.copy2(path, staged / path.name)
            _verify(staged)
            if folder is None:
                folder = registry.publish(models_dir, name, staged)
                self.client.set_model_version_tag(name, str(mv.version), FOLDER_TAG, str(folder))
            else:
                registry.publish_as(models_dir, name, staged, folder)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return folder

    def promote(
        self,
        models_dir: str | Path,
        name: str,
        version: int | str,
        *,
        alias: str = registry.PRODUCTION,
        force: bool = False,
    ) -> ExportReport:
        """The gate (`common.registry.promotion_refusal`), then the MLflow alias, exported."""
        self.import_folders(models_dir, name)
        self.export(models_dir, name)  # the gate compares against MLflow's production
        number, reason = registry.promotion_refusal(models_dir, name, version, alias=alias)
        if reason and not force:
            raise registry.PromotionRefusedError(
                f"refusing to promote: {reason}; use force to override"
            )
        return self.set_alias(models_dir, name, alias, number)

    def set_alias(
        self, models_dir: str | Path, name: str, alias: str, folder_version: int
    ) -> ExportReport:
        """Move an MLflow alias to a folder version (remembering the old one), then export."""
        mapping = self.folder_map(name)
        if folder_version not in mapping:
            self.import_folders(models_dir, name)
            mapping = self.folder_map(name)
        if folder_version not in mapping:
            raise registry.VersionNotFoundError(
                f"folder version {folder_version} of {name!r} is not registered in MLflow"
            )
        previous = self.mlflow_aliases(name).get(alias)
        reverse = {v: k for k, v in mapping.items()}
        if previous is not None and reverse.get(previous) != folder_version:
            self.client.set_registered_model_tag(
                name, PREVIOUS_TAG.format(alias=alias), str(reverse.get(previous, ""))
            )
        self.client.set_registered_model_alias(name, alias, mapping[folder_version])
        return self.export(models_dir, name)

    def rollback(
        self, models_dir: str | Path, name: str, alias: str = registry.PRODUCTION
    ) -> tuple[int, ExportReport]:
        """Move `alias` back to the folder version it pointed at before its last move."""
        from mlflow.exceptions import MlflowException

        try:
            tags = self.client.get_registered_model(name).tags or {}
        except MlflowException:
            tags = {}
        previous = tags.get(PREVIOUS_TAG.format(alias=alias), "")
        if not previous.isdigit():
            raise registry.RegistryError(
                f"{name!r} {alias} has no earlier version recorded in MLflow; "
                f"promote a version explicitly (registry promote N --force)"
            )
        return int(previous), self.set_alias(models_dir, name, alias, int(previous))


def _note(metadata: dict[str, Any]) -> str:
    m = metadata.get("metrics") or {}
    sets = (metadata.get("robustness") or {}).get("sets") or {}
    lines = [f"MNIST test accuracy {m.get('test_accuracy', float('nan')):.4%}"]
    lines += [f"robustness {k}: {v:.2%}" for k, v in sorted(sets.items())]
    return "\n".join(lines)


def _verify(folder: Path) -> None:
    """Downloaded files must be the ones the version's metadata.json lists."""
    metadata = json.loads((folder / registry.METADATA_FILE).read_text())
    for file_name, digest in (metadata.get("files") or {}).items():
        path = folder / file_name
        if not path.is_file() or file_sha256(path) != digest:
            raise registry.RegistryError(f"{file_name} from MLflow does not match its sha256")
