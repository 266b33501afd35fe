"""Schemathesis against the live OpenAPI schema: whatever it sends, never a 5xx, and every
answer is one the document declares: its status, its content type and its body's schema
(the typed responses of api/schemas.py, the `{"error": ...}` bodies included)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import LOG_DIR

pytestmark = pytest.mark.integration


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
    )
    report.write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout
