"""Every `curl` of the README runs as written against a live stack and gets its status.

The README is read as it renders: `curl` commands in code spans and in ```bash blocks
(backslash continuations joined). A command's expected status is the first number of its
trailing comment (`# 202 ...`, on its line or the comment line right under it), else the
endpoint's documented success. `localhost:8000` becomes the test API; `<id>` the job id the
previous command returned, or a fresh pending review's id under /v1/reviews/.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from common.reviews import review_id
from tests.integration.conftest import png_bytes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SERVICE = "localhost:8000"
SUCCESS = {"/v1/jobs": 202}  # POST; everything else documented here answers 200


@dataclass
class Example:
    command: str
    status: int


def _status(command: str, comment: str) -> int:
    found = re.match(r"\s*(\d{3})\b", comment)
    if found:
        return int(found.group(1))
    path = re.search(rf"{SERVICE}(/[^\s'?\"]*)", command).group(1)
    posts = " -F " in command or " -d " in command or "--data" in command
    return SUCCESS.get(path, 200) if posts else 200


def _split_comment(line: str) -> tuple[str, str]:
    code, _, comment = line.partition("  #")
    return code.strip(), comment


def _fenced(text: str) -> list[tuple[str, str]]:
    commands: list[tuple[str, str]] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        pending = ""
        for line in block.splitlines():
            code, comment = _split_comment(line)
            if pending:
                code, pending = pending + " " + code, ""
            elif not code and line.strip().startswith("#") and commands and not commands[-1][1]:
                commands[-1] = (commands[-1][0], line.strip()[1:])  # the comment under it
                continue
            if code.endswith("\\"):
                pending = code[:-1].strip()
            elif code.startswith("curl ") and SERVICE + "/v1/" in code:
                commands.append((code, comment))
    return commands


def readme_examples() -> list[Example]:
    text = README.read_text()
    spans = [
        (span.replace("\\|", "|"), "")  # a `|` escaped inside a table cell
        for span in re.findall(r"`(curl [^`\n]+)`", text)
        if SERVICE + "/v1/" in span
    ]
    return [
        Example(command, _status(command, comment)) for command, comment in spans + _fenced(text)
    ]


EXAMPLES = readme_examples()


def test_the_readme_shows_every_endpoint_by_example():
    shown = " ".join(example.command for example in EXAMPLES)
    for path in ("/v1/predict", "/v1/postcodes", "/v1/jobs?", "/v1/jobs/<id>", "/v1/reviews"):
        assert path in shown, path
    assert len(EXAMPLES) >= 10


def _pending_review(http: httpx.Client) -> str:
    """A job whose image has no ink: it is answered and queued for review."""
    blank = png_bytes(np.zeros((28, 28), np.uint8))
    answer = http.post("/v1/predict", content=blank, headers={"Content-Type": "image/png"})
    assert answer.status_code == 200 and answer.json()["predictions"][0]["needs_review"]
    return review_id(answer.json()["id"], 0)


def _body(raw: str) -> dict:
    if raw.startswith("HTTP/"):  # -i: header blocks first (a 100 Continue's, then ours)
        raw = raw.rsplit("\r\n\r\n", 1)[-1]
    try:
        return json.loads(raw)
    except ValueError:
        return {}


def test_every_readme_curl_example_answers_its_documented_status(api_url, tmp_path):
    host = api_url.removeprefix("http://")
    last_job = None
    with httpx.Client(base_url=api_url, timeout=10) as http:
        for example in EXAMPLES:
            command = example.command.replace(SERVICE, host)
            if "/v1/reviews/<id>" in command:
                command = command.replace("<id>", _pending_review(http))
            elif "<id>" in command:
                assert last_job, f"no job id for {example.command}"
                command = command.replace("<id>", last_job)
            out = tmp_path / "body"
            run = "curl -sS -o " + shlex.quote(str(out)) + " -w '%{http_code}' " + command[5:]
            done = subprocess.run(
                ["bash", "-c", run], cwd=ROOT, capture_output=True, text=True, timeout=30
            )
            body = out.read_bytes().decode() if out.exists() else ""  # \r\n kept
            assert done.returncode == 0, f"{example.command}\n{done.stderr}"
            assert int(done.stdout) == example.status, f"{example.command}\n{body}"
            if "/v1/jobs" in command and example.status == 202:
                last_job = _body(body)["id"]
