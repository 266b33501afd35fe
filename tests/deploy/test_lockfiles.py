"""The lockfiles (requirements/lock/, `make lock`) are what every install uses: `make run`,
`make test` and both Dockerfiles install them with `--require-hashes`. requirements/*.txt keep
the direct pins by hand; these checks fail when one was edited without `make lock`, and when
an image's lockfile would bring in what that image must not contain."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.support import ROOT

LOCK = ROOT / "requirements" / "lock"
SOURCES = {
    "api.txt": ["api.txt"],
    "worker.txt": ["worker.txt"],
    "serve.txt": ["api.txt", "worker.txt"],
    "dev.txt": ["dev.txt", "api.txt", "worker.txt", "train.txt"],
}
"""Each lockfile and the hand-written lists it is resolved from (dev.txt includes the rest)."""


def locked(lockfile: Path) -> dict[str, tuple[str, list[str]]]:
    """Package -> (pinned version, its hashes)."""
    entries: dict[str, tuple[str, list[str]]] = {}
    text = lockfile.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[[^]]*\])?==(\S+)((?:\s+--hash=\S+)*)", line)
        assert match, f"{lockfile.name}: not a hashed pin: {line[:80]}"
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", match[3])
        entries[canonicalize_name(match[1])] = (match[2], hashes)
    return entries


def direct_pins(name: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{name}: pin exactly: {line}"
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


@pytest.mark.parametrize("lockfile", sorted(SOURCES))
def test_every_package_is_pinned_with_a_hash(lockfile: str) -> None:
    entries = locked(LOCK / lockfile)
    assert len(entries) > 20
    assert all(hashes for _, hashes in entries.values()), "every pin needs --hash"


@pytest.mark.parametrize(("lockfile", "sources"), sorted(SOURCES.items()))
def test_the_lockfile_agrees_with_the_direct_pins(lockfile: str, sources: list[str]) -> None:
    entries = locked(LOCK / lockfile)
    for source in sources:
        for name, version in direct_pins(source).items():
            assert name in entries, f"{source} lists {name}: run `make lock`"
            assert entries[name][0] == version, f"{source} pins {name}=={version}: `make lock`"


def test_the_api_lockfile_has_no_model_runtime() -> None:
    api = set(locked(LOCK / "api.txt"))
    assert {"fastapi", "celery", "redis"} <= api
    assert not api & {"tensorflow", "tensorflow-cpu", "keras", "onnxruntime", "tf2onnx", "onnx"}
    assert not api & {"mlflow", "mlflow-skinny", "sqlalchemy", "alembic"}
    worker = set(locked(LOCK / "worker.txt"))
    assert "onnxruntime" in worker and not worker & {"tensorflow", "keras", "mlflow-skinny"}
    assert "tensorflow" in locked(LOCK / "dev.txt")  # control: the walk would see it


def test_make_installs_the_lockfiles_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for name in ("serve.txt", "dev.txt"):
        assert f"pip install --quiet --require-hashes -r requirements/lock/{name}" in makefile
    assert not re.search(r"pip install[^\n]*-r requirements/(api|worker|dev)\.txt", makefile)


def test_project_metadata_reads_the_same_lists() -> None:
    """`[project]` in pyproject.toml: each part's extra is its requirements file, expanded by
    setuptools itself (offline: nothing is built)."""
    from setuptools.config.pyprojecttoml import read_configuration

    with warnings.catch_warnings():  # `[tool.setuptools]` is "beta" to setuptools
        warnings.simplefilter("ignore")
        project = read_configuration(ROOT / "pyproject.toml", expand=True)["project"]
    assert project["requires-python"] == ">=3.11,<3.12"
    extras = project["optional_dependencies"]  # expanded from the files
    assert set(extras) == {"api", "worker", "train"}
    for extra, requirements in extras.items():
        names = {canonicalize_name(Requirement(line).name) for line in requirements}
        assert names == set(direct_pins(f"{extra}.txt")), extra
    assert project["scripts"] == {
        "digits-api": "api.__main__:main",
        "digits-worker": "workers.__main__:main",
    }
