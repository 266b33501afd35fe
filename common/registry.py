"""The model registry: `models/<name>/<version>/` folders plus `models/<name>/aliases.json`.

Pure Python (json/pathlib) because workers import it and have no TensorFlow. Versions are
integers (the TF Serving / Triton layout) and immutable: a version folder appears in one
atomic rename and is never rewritten; only aliases move. Promotion guards production against
a worse model unless forced: clean MNIST at least `MIN_ACCURACY` and not more than
`MAX_REGRESSION` below production, and better than production on every robustness set
(`evaluation.robust`, scored side by side at training time: metadata `robustness`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import environment

ALIASES_FILE = "aliases.json"
METADATA_FILE = "metadata.json"
PRODUCTION = "production"
MIN_ACCURACY = 0.992
"""Clean MNIST test accuracy below which a model is never promoted without force."""
MAX_REGRESSION = 0.002
"""How much worse than current production (absolute accuracy) a new model may be."""


class RegistryError(Exception):
    """Base class; messages say what to do."""


class VersionNotFoundError(RegistryError, LookupError):
    pass


class PromotionRefusedError(RegistryError):
    pass


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    path: Path
    accuracy: float | None
    loss: float | None
    created_at: str | None
    aliases: list[str] = field(default_factory=list)


def default_models_dir() -> Path:
    return Path(environment.read("MODELS_DIR", "") or "models")


def _model_dir(models_dir: str | Path, name: str) -> Path:
    return Path(models_dir) / name


def _numbered_dirs(models_dir: str | Path, name: str) -> list[Path]:
    root = _model_dir(models_dir, name)
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and p.name.isdigit()]


def versions(models_dir: str | Path, name: str) -> list[int]:
    """Published version numbers, ascending.

    A version is a numbered folder with a metadata.json: hidden staging folders and a number
    claimed by `publish` a moment before its rename are not versions yet.
    """
    return sorted(
        int(p.name) for p in _numbered_dirs(models_dir, name) if (p / METADATA_FILE).is_file()
    )


def read_aliases(models_dir: str | Path, name: str) -> dict[str, int]:
    path = _model_dir(models_dir, name) / ALIASES_FILE
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {str(alias): int(version) for alias, version in raw.items()}
    except (ValueError, AttributeError, TypeError) as exc:
        raise RegistryError(f"{path} is not a JSON object of alias -> version: {exc}") from exc


def read_metadata(models_dir: str | Path, name: str, version: int | str) -> dict[str, Any]:
    path = resolve(models_dir, name, version) / METADATA_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"cannot read {path}: {exc}") from exc


def resolve(models_dir: str | Path, name: str, version_or_alias: int | str = PRODUCTION) -> Path:
    """The folder of an explicit version (`3`, `"3"`) or of the version an alias names."""
    text = str(version_or_alias)
    if text.isdigit():
        version = int(text)
    else:
        table = read_aliases(models_dir, name)
        if text not in table:
            raise VersionNotFoundError(
                f"model {name!r} has no alias {text!r} in {_model_dir(models_dir, name)} "
                f"(aliases: {sorted(table) or 'none'}); train one and promote it"
            )
        version = table[text]
    path = _model_dir(models_dir, name) / str(version)
    if not path.is_dir():
        raise VersionNotFoundError(
            f"model {name!r} version {version} not found under {Path(models_dir)} "
            f"(versions: {versions(models_dir, name) or 'none'})"
        )
    return path


def metrics_of(metadata: dict[str, Any]) -> tuple[float | None, float | None]:
    metrics = metadata.get("metrics", {})
    return metrics.get("test_accuracy"), metrics.get("test_loss")


def list_versions(models_dir: str | Path, name: str) -> list[VersionInfo]:
    table = read_aliases(models_dir, name)
    infos = []
    for version in versions(models_dir, name):
        path = _model_dir(models_dir, name) / str(version)
        try:
            metadata = json.loads((path / METADATA_FILE).read_text())
        except (OSError, ValueError):
            metadata = {}
        accuracy, loss = metrics_of(metadata)
        tags = sorted(alias for alias, v in table.items() if v == version)
        infos.append(
            VersionInfo(name, version, path, accuracy, loss, metadata.get("created_at"), tags)
        )
    return infos


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o644)  # mkstemp creates it private; workers may run as another user
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def robustness_against(
    candidate: dict[str, Any], current: dict[str, Any] | None, current_version: int | None
) -> tuple[dict[str, float], dict[str, float] | None]:
    """(candidate's, production's) robustness scores on the same sets, production's None when
    they were never measured on those sets. Production's come from its own metadata when it was
    scored on the same generated sets, else from the candidate's side-by-side run."""
    mine = candidate.get("robustness") or {}
    scores = mine.get("sets") or {}
    theirs = (current or {}).get("robustness") or {}
    if theirs.get("sets") and theirs.get("generator") == mine.get("generator"):
        return scores, theirs["sets"]
    side_by_side = mine.get("production") or {}
    if side_by_side.get("sets") and side_by_side.get("version") == current_version:
        return scores, side_by_side["sets"]
    return scores, None


def check_robustness(
    candidate: dict[str, float],
    current: dict[str, float] | None,
    *,
    version: int,
    current_version: int,
) -> str | None:
    """Why a promotion is refused on the robustness sets, or None: better on every one."""
    if not candidate:
        return f"version {version} has no robustness scores in its metadata"
    if current is None:
        return (
            f"version {version} was not scored side by side with production version "
            f"{current_version} on the robustness sets; retrain it with --robustness"
        )
    worse = [
        f"{name} {candidate.get(name, 0.0):.2%} <= {score:.2%}"
        for name, score in sorted(current.items())
        if candidate.get(name, 0.0) <= score
    ]
    if worse:
        return (
            f"version {version} is not better than production version {current_version} on "
            f"every robustness set ({'; '.join(worse)})"
        )
    return None


def check_promotion(
    candidate: float | None, current: float | None, *, version: int, current_version: int | None
) -> str | None:
    """Why a promotion must be refused on clean MNIST, or None when the rules allow it."""
    if candidate is None:
        return f"version {version} has no test accuracy in its metadata"
    if candidate < MIN_ACCURACY:
        return (
            f"version {version} has test accuracy {candidate:.4%}, below the "
            f"{MIN_ACCURACY:.1%} minimum"
        )
    if current is not None and candidate < current - MAX_REGRESSION:
        return (
            f"version {version} ({candidate:.4%}) is more than {MAX_REGRESSION * 100:.1f} points "
            f"worse than production version {current_version} ({current:.4%})"
        )
    return None


def promotion_refusal(
    models_dir: str | Path, name: str, version: int | str, *, alias: str = PRODUCTION
) -> tuple[int, str | None]:
    """(version number, why the gate refuses to point `alias` at it, or None)."""
    version_number = int(resolve(models_dir, name, version).name)
    candidate_meta = read_metadata(models_dir, name, version_number)
    candidate, _ = metrics_of(candidate_meta)
    current_version = read_aliases(models_dir, name).get(alias)
    current, current_meta = None, None
    if current_version is not None and current_version != version_number:
        try:
            current_meta = read_metadata(models_dir, name, current_version)
            current, _ = metrics_of(current_meta)
        except RegistryError:
            current = None  # the aliased version vanished: nothing to compare against
    reason = check_promotion(
        candidate, current, version=version_number, current_version=current_version
    )
    if reason is None and current_meta is not None and current_version is not None:
        mine, theirs = robustness_against(candidate_meta, current_meta, current_version)
        reason = check_robustness(
            mine, theirs, version=version_number, current_version=current_version
        )
    if reason is None and current_version is not None and current_version != version_number:
        reason = check_reviewed(
            candidate_meta, version=version_number, current_version=current_version
        )
    return version_number, reason


def check_reviewed(candidate: dict[str, Any], *, version: int, current_version: int) -> str | None:
    """Why a promotion is refused on the held-out reviewed examples (metadata `reviewed`,
    scored side by side with production at training time), or None. A version trained
    without reviewed examples, or scored against another production, is not judged here."""
    reviewed = candidate.get("reviewed") or {}
    production = reviewed.get("production") or {}
    if reviewed.get("accuracy") is None or production.get("version") != current_version:
        return None
    if reviewed["accuracy"] < production["accuracy"]:
        return (
            f"version {version} is worse than production version {current_version} on the "
            f"{reviewed.get('heldout_examples')} held-out reviewed examples "
            f"({reviewed['accuracy']:.2%} < {production['accuracy']:.2%})"
        )
    return None


def write_aliases(models_dir: str | Path, name: str, table: dict[str, int]) -> None:
    """Replace aliases.json in one rename: a reader sees the old table or the new one."""
    _write_json_atomic(
        _model_dir(models_dir, name) / ALIASES_FILE, {k: str(v) for k, v in table.items()}
    )


def promote(
    models_dir: str | Path,
    name: str,
    version: int | str,
    *,
    alias: str = PRODUCTION,
    force: bool = False,
) -> int:
    """Point `alias` at `version` (returned); refuses per `check_promotion` unless `force`."""
    version_number, reason = promotion_refusal(models_dir, name, version, alias=alias)
    if reason and not force:
        raise PromotionRefusedError(f"refusing to promote: {reason}; use force to override")
    table = read_aliases(models_dir, name)
    table[alias] = version_number
    write_aliases(models_dir, name, table)
    return version_number


def staging_dir(models_dir: str | Path, name: str) -> Path:
    """A hidden folder next to the versions (same filesystem, so `publish` is one rename)."""
    root = _model_dir(models_dir, name)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))


def publish(
    models_dir: str | Path,
    name: str,
    staged: Path,
    finalize: Callable[[int], None] | None = None,
) -> int:
    """Give a complete staged folder the next version number in one atomic rename.

    `finalize(version)` runs after the number is claimed and before the rename, so files that
    mention their own version (metadata, model card) are written before the version appears.
    """
    root = _model_dir(models_dir, name)
    if Path(staged).resolve().parent != root.resolve():
        raise RegistryError(f"{staged} must be a staging folder directly inside {root}")
    for _ in range(100):
        taken = [int(p.name) for p in _numbered_dirs(models_dir, name)]
        version = max(taken, default=0) + 1
        target = root / str(version)
        try:
            target.mkdir()  # claim the number; a concurrent publisher gets FileExistsError
        except FileExistsError:
            continue
        _move_into_claimed(staged, target, version, finalize)
        return version
    raise RegistryError(f"could not allocate a version number under {root}")


def _move_into_claimed(
    staged: Path,
    target: Path,
    version: int,
    finalize: Callable[[int], None] | None = None,
) -> None:
    """Rename `staged` onto the empty `target` this process claimed (mkdir), after
    `finalize(version)`; on any failure the claim is released so the number can be taken again."""
    try:
        if finalize is not None:
            finalize(version)
        # rename onto the empty directory we own replaces it; onto a non-empty one fails
        os.rename(staged, target)
    except BaseException:
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        raise


def publish_as(models_dir: str | Path, name: str, staged: Path, version: int) -> int:
    """Give a complete staged folder the number it already has elsewhere (an export from the
    MLflow registry): the same claim-then-rename as `publish`, refused if that number exists."""
    root = _model_dir(models_dir, name)
    if Path(staged).resolve().parent != root.resolve():
        raise RegistryError(f"{staged} must be a staging folder directly inside {root}")
    target = root / str(version)
    try:
        target.mkdir()
    except FileExistsError:
        raise RegistryError(f"{target} exists: versions are never overwritten") from None
    _move_into_claimed(staged, target, version)
    return version
