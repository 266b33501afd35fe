"""Each image's requirements cover what its code imports.

The API image installs requirements/api.txt only, the worker image requirements/worker.txt.
The dev venv has everything, so a module the API imports but api.txt lacks passes every
in-process test and then crashes the container at start (httpx, for Prometheus queries, did
exactly that). This reads the imports of each image's packages and checks that every
third-party one is provided by a listed requirement or something it depends on.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.deploy.support import ROOT

IMAGES = {"api.txt": ["api"], "worker.txt": ["workers"]}
LOCAL = {"api", "workers", "common", "training", "evaluation", "bench", "tests", "examples"}


def imported_modules(packages: list[str]) -> set[str]:
    """Top-level third-party modules imported by every file of `packages` and by the local
    modules those import, transitively (at module level or inside functions): `common` as
    the API uses it is not `common` as the workers use it."""
    files = [path for package in packages for path in (ROOT / package).rglob("*.py")]
    found: set[str] = set()
    seen: set[Path] = set()
    while files:
        path = files.pop()
        if path in seen or not path.exists():
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                top = name.split(".")[0]
                if top in LOCAL:
                    module = ROOT / Path(*name.split("."))
                    files += [module.with_suffix(".py"), module / "__init__.py"]
                else:
                    found.add(top)
    return found - set(sys.stdlib_module_names) - {"__future__"}


def listed(requirements: Path) -> dict[str, set[str]]:
    """Requirement name -> the extras it is installed with."""
    names: dict[str, set[str]] = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            names[_normal(requirement.name)] = set(requirement.extras)
    return names


def closure(names: dict[str, set[str]]) -> set[str]:
    """The listed distributions and everything they require (with their extras), as installed."""
    seen: set[str] = set()
    todo = list(names.items())
    while todo:
        name, extras = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in requires:
            requirement = Requirement(spec)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in extras | {""}):
                todo.append((_normal(requirement.name), set(requirement.extras)))
    return seen


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("requirements", sorted(IMAGES))
def test_every_third_party_import_of_an_image_is_in_its_requirements(requirements: str) -> None:
    provided = closure(listed(ROOT / "requirements" / requirements))
    distributions = metadata.packages_distributions()
    missing = {}
    for module in sorted(imported_modules(IMAGES[requirements])):
        owners = {_normal(d) for d in distributions.get(module, [])}
        if owners and not owners & provided:
            missing[module] = sorted(owners)
    assert not missing, f"imported but not installed by requirements/{requirements}: {missing}"


def test_the_check_sees_a_missing_requirement(tmp_path: Path) -> None:
    without = tmp_path / "api.txt"
    lines = (ROOT / "requirements" / "api.txt").read_text().splitlines()
    without.write_text("\n".join(line for line in lines if not line.startswith("httpx")))
    assert "httpx" not in closure(listed(without))
    assert "httpx" in imported_modules(IMAGES["api.txt"])
