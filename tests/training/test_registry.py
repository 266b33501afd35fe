"""Registry rules: numbering, immutability, alias resolution, listing, promote/refuse/force,
and the robustness gate (better than production on every robustness set)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from common import registry

NAME = "digits"


GENERATOR = "robustness-test-abc"


def add_version(
    models: Path,
    accuracy: float | None,
    name: str = NAME,
    robustness: dict | None = None,
    side_by_side: dict | None = None,
    extra: dict | None = None,
) -> int:
    """A version folder; `robustness`: its {set: accuracy}; `side_by_side`: production's
    scores recorded in the same run ({"version": v, "sets": {...}})."""
    staged = registry.staging_dir(models, name)
    metrics = {} if accuracy is None else {"test_accuracy": accuracy, "test_loss": 0.03}
    (staged / "model.onnx").write_bytes(b"weights")
    scores = None
    if robustness is not None:
        scores = {"sets": robustness, "generator": GENERATOR, "production": side_by_side}

    def finalize(version: int) -> None:
        metadata = {"version": version, "created_at": "2026-01-01T00:00:00+00:00"}
        metadata |= {"metrics": metrics, "robustness": scores, **(extra or {})}
        (staged / "metadata.json").write_text(json.dumps(metadata))

    return registry.publish(models, name, staged, finalize)


def test_versions_are_numbered_and_listed(tmp_path: Path) -> None:
    assert registry.list_versions(tmp_path, NAME) == []
    assert [add_version(tmp_path, a) for a in (0.991, 0.985, 0.993)] == [1, 2, 3]
    registry.promote(tmp_path, NAME, 3)
    infos = registry.list_versions(tmp_path, NAME)
    assert [(i.version, i.accuracy, i.aliases) for i in infos] == [
        (1, 0.991, []),
        (2, 0.985, []),
        (3, 0.993, ["production"]),
    ]
    assert not list((tmp_path / NAME).glob(".staging-*"))


def test_resolve_alias_and_explicit_version(tmp_path: Path) -> None:
    add_version(tmp_path, 0.993)
    add_version(tmp_path, 0.994)
    with pytest.raises(registry.VersionNotFoundError, match="no alias 'production'"):
        registry.resolve(tmp_path, NAME)
    registry.promote(tmp_path, NAME, "1")
    assert registry.resolve(tmp_path, NAME) == tmp_path / NAME / "1"
    assert registry.resolve(tmp_path, NAME, 2) == tmp_path / NAME / "2"
    assert registry.resolve(tmp_path, NAME, "2") == tmp_path / NAME / "2"
    assert json.loads((tmp_path / NAME / "aliases.json").read_text()) == {"production": "1"}
    with pytest.raises(registry.VersionNotFoundError, match="version 9 not found"):
        registry.resolve(tmp_path, NAME, 9)


def test_promotion_refuses_below_minimum_unless_forced(tmp_path: Path) -> None:
    add_version(tmp_path, 0.9919)
    with pytest.raises(registry.PromotionRefusedError, match=r"below the 99\.2% minimum"):
        registry.promote(tmp_path, NAME, 1)
    assert registry.read_aliases(tmp_path, NAME) == {}
    assert registry.promote(tmp_path, NAME, 1, force=True) == 1
    assert registry.read_aliases(tmp_path, NAME) == {"production": 1}


def test_promotion_refuses_regression_over_limit(tmp_path: Path) -> None:
    sets = {"fonts": 0.95}
    better = {"fonts": 0.97}
    add_version(tmp_path, 0.9950, robustness=sets)
    add_version(tmp_path, 0.9925, robustness=better)  # 0.25 points worse: refused
    add_version(tmp_path, 0.9935, robustness=better)  # 0.15 points worse: allowed
    add_version(tmp_path, None)  # no metrics at all: refused
    registry.promote(tmp_path, NAME, 1)
    with pytest.raises(registry.PromotionRefusedError, match="worse than production version 1"):
        registry.promote(tmp_path, NAME, 2)
    with pytest.raises(registry.PromotionRefusedError, match="no test accuracy"):
        registry.promote(tmp_path, NAME, 4)
    assert registry.read_aliases(tmp_path, NAME) == {"production": 1}
    registry.promote(tmp_path, NAME, 3)
    assert registry.read_aliases(tmp_path, NAME) == {"production": 3}
    registry.promote(tmp_path, NAME, 2, force=True)
    assert registry.read_aliases(tmp_path, NAME) == {"production": 2}


def test_promotion_needs_better_robustness_on_every_set(tmp_path: Path) -> None:
    add_version(tmp_path, 0.993, robustness={"fonts": 0.95, "codes": 0.80})
    registry.promote(tmp_path, NAME, 1)
    add_version(tmp_path, 0.994, robustness={"fonts": 0.99, "codes": 0.80})  # a tie is not better
    add_version(tmp_path, 0.994)  # never scored
    add_version(tmp_path, 0.994, robustness={"fonts": 0.99, "codes": 0.93})
    with pytest.raises(registry.PromotionRefusedError, match=r"codes 80\.00% <= 80\.00%"):
        registry.promote(tmp_path, NAME, 2)
    with pytest.raises(registry.PromotionRefusedError, match="no robustness scores"):
        registry.promote(tmp_path, NAME, 3)
    assert registry.promote(tmp_path, NAME, 4) == 4


def test_robustness_of_production_from_the_side_by_side_run(tmp_path: Path) -> None:
    add_version(tmp_path, 0.993)  # an old production scored before the robustness sets
    registry.promote(tmp_path, NAME, 1)
    add_version(tmp_path, 0.994, robustness={"fonts": 0.97})  # nothing to compare against
    with pytest.raises(registry.PromotionRefusedError, match="not scored side by side"):
        registry.promote(tmp_path, NAME, 2)
    old = {"version": 1, "sets": {"fonts": 0.98}}
    add_version(tmp_path, 0.994, robustness={"fonts": 0.97}, side_by_side=old)
    with pytest.raises(registry.PromotionRefusedError, match="not better than production"):
        registry.promote(tmp_path, NAME, 3)
    old = {"version": 1, "sets": {"fonts": 0.95}}
    add_version(tmp_path, 0.994, robustness={"fonts": 0.97}, side_by_side=old)
    assert registry.promote(tmp_path, NAME, 4) == 4


def test_promotion_refuses_worse_on_the_held_out_reviewed_examples(tmp_path: Path) -> None:
    add_version(tmp_path, 0.993, robustness={"fonts": 0.95})
    registry.promote(tmp_path, NAME, 1)

    def reviewed(mine: float, theirs: float, against: int = 1) -> dict:
        production = {"version": against, "accuracy": theirs}
        return {"reviewed": {"accuracy": mine, "heldout_examples": 40, "production": production}}

    better = {"fonts": 0.96}
    add_version(tmp_path, 0.994, robustness=better, extra=reviewed(0.80, 0.85))
    add_version(tmp_path, 0.994, robustness=better, extra=reviewed(0.80, 0.95, against=7))
    add_version(tmp_path, 0.994, robustness=better, extra=reviewed(0.85, 0.85))
    with pytest.raises(registry.PromotionRefusedError, match=r"40 held-out reviewed.*80\.00%"):
        registry.promote(tmp_path, NAME, 2)
    # scored against another production: not judged on reviews; a tie is not worse
    assert registry.promotion_refusal(tmp_path, NAME, 3)[1] is None
    assert registry.promote(tmp_path, NAME, 4) == 4


def test_versions_are_immutable(tmp_path: Path) -> None:
    add_version(tmp_path, 0.993)
    before = {p.name: p.read_bytes() for p in (tmp_path / NAME / "1").iterdir()}
    registry.promote(tmp_path, NAME, 1)
    assert add_version(tmp_path, 0.995) == 2  # a new number, never a rewrite of 1
    after = {p.name: p.read_bytes() for p in (tmp_path / NAME / "1").iterdir()}
    assert after == before
    # a staging folder cannot be renamed over an existing version
    staged = registry.staging_dir(tmp_path, NAME)
    (staged / "x").write_text("x")
    with pytest.raises(OSError):
        Path(staged).rename(tmp_path / NAME / "1")


def test_failed_finalize_leaves_no_version(tmp_path: Path) -> None:
    staged = registry.staging_dir(tmp_path, NAME)

    def boom(version: int) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        registry.publish(tmp_path, NAME, staged, boom)
    assert registry.versions(tmp_path, NAME) == []
    assert not (tmp_path / NAME / "1").exists()
    assert add_version(tmp_path, 0.991) == 1


def test_publish_refuses_a_folder_outside_the_model(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(registry.RegistryError, match="staging folder"):
        registry.publish(tmp_path / "models", NAME, elsewhere)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "training", "registry", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_cli_list_show_promote(tmp_path: Path) -> None:
    add_version(tmp_path, 0.9932, name="mnist_cnn")
    add_version(tmp_path, 0.95, name="mnist_cnn")
    common = ["--models-dir", str(tmp_path)]
    refused = run_cli("promote", "2", *common)
    assert refused.returncode == 2 and "refusing to promote" in refused.stderr
    assert run_cli("promote", "1", *common).returncode == 0
    listing = run_cli("list", *common)
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert "99.3200%" in lines[1] and lines[1].rstrip().endswith("production")
    shown = run_cli("show", "production", *common)
    assert json.loads(shown.stdout)["version"] == 1
    assert run_cli("promote", "2", "--force", *common).returncode == 0
    assert registry.read_aliases(tmp_path, "mnist_cnn") == {"production": 2}
