"""The habits the project enforces: the pre-commit hooks run what `make lint` runs, and the
type gate covers the code both images ship."""

from __future__ import annotations

import re
import subprocess
import tomllib

import yaml

from tests.deploy.support import ROOT


def test_pre_commit_runs_what_make_lint_runs() -> None:
    config = ROOT / ".pre-commit-config.yaml"
    check = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "pre-commit"), "validate-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    hooks = [h for repo in yaml.safe_load(config.read_text())["repos"] for h in repo["hooks"]]
    lint = re.search(r"^lint:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert lint is not None
    wanted = {"ruff check", "ruff format", "mypy"}
    assert wanted <= {tool(h["entry"]) for h in hooks}
    assert wanted <= {tool(line.replace("$(BIN)/", "")) for line in lint[1].splitlines()}


def tool(command: str) -> str:
    """`ruff check`, `ruff format` or `mypy` from a command line (paths and flags dropped)."""
    words = [w.rsplit("/", 1)[-1] for w in command.split() if not w.startswith("-")]
    return " ".join(words[:2]) if words and words[0] == "ruff" else words[0]


def test_the_type_gate_covers_the_serving_code() -> None:
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert set(mypy["files"]) == {"api", "workers", "common"}
    assert "pydantic.mypy" in mypy["plugins"]
