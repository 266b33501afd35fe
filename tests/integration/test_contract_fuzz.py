"""Schemathesis against the live OpenAPI schema: whatever it sends, never a 5xx, and every
answer is one the document declares: its status, its content type and its body's schema
(the typed responses of api/schemas.py, the `{"error": ...}` bodies included)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.processes import LOG_DIR

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _tree_changes(path: str) -> str:
    """`git status` of `path` (tracked changes and untracked files not ignored)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return ""  # not a checkout (an sdist, a container): nothing to compare
    status = ["git", "status", "--porcelain", "--", path]
    return subprocess.run(status, cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_every_generated_request_gets_a_declared_answer_never_a_5xx(api_url):
    binary = Path(sys.executable).with_name("schemathesis")
    command = [str(binary)] if binary.exists() else [shutil.which("schemathesis") or "schemathesis"]
    report = LOG_DIR / "schemathesis.txt"
    result = subprocess.run(
        [
            *command,
            "run",
            f"{api_url}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
            "--max-examples",
            "15",
            "--seed",
            "20261129",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,  # where schemathesis keeps its cache, .schemathesis/
    )
    report.write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout
    # its cache is ignored, not tracked: `make test` leaves the checkout as it found it
    assert _tree_changes(".schemathesis") == "", "schemathesis's cache must stay untracked"
