"""Postal codes read against a directory of valid codes, end to end.

Its own throw-away redis-server, a real worker started with `DIGITS_POSTCODE_DIRECTORY` (workers
read their settings from the environment) and a real API: the session's stack has no
directory, and two workers on one Redis would share the queues.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from harness.processes import (
    RedisServer,
    free_port,
    start_api,
    start_worker,
    wait_for_workers,
    wait_until,
)
from tests.integration.test_postcodes_and_reviews import postcode_png

pytestmark = pytest.mark.integration


def neighbours(code: str) -> set[str]:
    """`code` and every code one digit away from it."""
    out = {code}
    for k in range(len(code)):
        for d in "0123456789":
            out.add(code[:k] + d + code[k + 1 :])
    return out


def changed(code: str, k: int) -> str:
    return code[:k] + str((int(code[k]) + 1) % 10) + code[k + 1 :]


def within_two(code: str) -> set[str]:
    return {far for near in neighbours(code) for far in neighbours(near)}


@pytest.fixture(scope="module")
def codes(mnist_test, local_model):
    """Two codes of ten digits the model reads confidently: `valid` is in the directory
    (with a one-digit neighbour as the natural runner-up), `invalid` is not. Its expected
    reading `corrected` changes the one digit whose second choice comes closest to its first
    (by the model on the raw digits): the most likely code after the argmax itself, and the
    only directory code within two digits of it."""
    images, labels = mnist_test
    p = local_model.predict(images[:400])
    confident = [i for i in range(400) if p[i].max() > 0.999][:10]
    digits = [images[i] for i in confident]
    text = "".join(str(labels[i]) for i in confident)
    invalid_p = p[confident[5:]].astype(np.float64)
    second = invalid_p.copy()
    second[np.arange(5), invalid_p.argmax(axis=1)] = 0
    k, c = np.unravel_index(second.argmax(), second.shape)
    invalid = text[5:]
    corrected = invalid[:k] + str(c) + invalid[k + 1 :]
    return {
        "valid": (digits[:5], text[:5]),
        "invalid": (digits[5:], invalid),
        "corrected": (corrected, int(k)),
    }


@pytest.fixture(scope="module")
def directory_file(tmp_path_factory, codes) -> Path:
    valid, invalid = codes["valid"][1], codes["invalid"][1]
    corrected = codes["corrected"][0]
    rng = np.random.default_rng(11)
    near = neighbours(valid) | within_two(invalid)
    filler = {f"{i:05d}" for i in rng.choice(100_000, 3000, replace=False)} - near
    chosen = {valid, changed(valid, 0), corrected} | filler
    assert invalid not in chosen
    path = tmp_path_factory.mktemp("directory") / "codes.txt"
    path.write_text("# test directory\n" + "\n".join(sorted(chosen)) + "\n")
    return path


@pytest.fixture(scope="module")
def directory_client(directory_file) -> Iterator[httpx.Client]:
    server = RedisServer()
    worker = start_worker(
        server.url, name="directory-worker", DIGITS_POSTCODE_DIRECTORY=str(directory_file)
    )
    try:
        try:
            wait_for_workers(server.url, count=1)
        except TimeoutError:
            pytest.fail(f"worker did not become ready:\n{worker.log_tail()}")
        port = free_port()
        api = start_api(server.url, port, name="directory-api")
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                yield http
        finally:
            api.stop()
    finally:
        worker.stop()
        server.stop()


def post_code(client: httpx.Client, digits, length: int | None = 5) -> dict:
    query = f"?length={length}" if length else ""
    response = client.post(
        f"/v1/postcodes{query}",
        content=postcode_png(digits, [6] * len(digits)),
        headers={"Content-Type": "image/png"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_valid_code_is_read_with_its_runner_up(directory_client, codes):
    digits, text = codes["valid"]
    body = post_code(directory_client, digits)
    assert body["decoding"] == "directory"
    assert body["text"] == text and body["per_digit_text"] == text
    assert body["runner_up"]["text"] == changed(text, 0)
    assert body["probability"] == body["confidence"] > 0.99
    assert body["runner_up"]["probability"] < 0.01
    assert body["needs_review"] is False and body["reasons"] == []
    assert [d["digit"] for d in body["digits"]] == [int(c) for c in text]


def test_an_invalid_reading_becomes_the_most_likely_valid_code(directory_client, codes):
    digits, text = codes["invalid"]
    corrected, k = codes["corrected"]
    body = post_code(directory_client, digits)
    assert body["decoding"] == "directory"
    assert body["per_digit_text"] == text  # what the digits alone say: not a valid code
    assert body["text"] == corrected
    assert body["postcodes"][0]["text"] == body["text"]
    # that digit's own probability is what the model gave the directory's digit: low
    assert body["digits"][k]["confidence"] < 0.01
    assert body["digits"][k]["digit"] == int(corrected[k])


def test_a_length_no_directory_code_has(directory_client, codes):
    digits, text = codes["valid"]
    body = post_code(directory_client, digits[:4], length=4)
    assert body["decoding"] == "digits" and body["text"] == text[:4]
    assert body["needs_review"] is True and body["reasons"] == ["length_not_in_directory"]


def test_a_bad_directory_stops_the_worker_at_start_up(tmp_path):
    bad = tmp_path / "codes.txt"
    bad.write_text("90210\n9021O\n")
    worker = start_worker(
        "redis://127.0.0.1:1/0", name="bad-directory-worker", DIGITS_POSTCODE_DIRECTORY=str(bad)
    )
    try:
        wait_until(lambda: not worker.alive(), 30, "the worker to refuse to start")
        assert worker.proc.returncode == 2
        log = worker.log_tail()
        assert "line 2" in log and str(bad) in log
    finally:
        worker.stop()
