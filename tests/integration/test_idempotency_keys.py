"""Idempotency-Key: the same request retried is the same job; the key reused for other work
is a 409; keys belong to the caller (API key) that used them."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from api.serving.jobs import _idempotency_key
from harness.processes import free_port, start_api

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DIGIT = (EXAMPLES / "digit.png").read_bytes()
OTHER = (EXAMPLES / "a.png").read_bytes()


def submit(http: httpx.Client, key: str, image: bytes, **params) -> httpx.Response:
    # multipart: httpx draws a new boundary each time, so the bytes differ between retries
    files = {"file": ("x.png", image, "image/png")}
    return http.post("/v1/jobs", files=files, params=params, headers={"Idempotency-Key": key})


def test_a_retry_of_the_same_request_is_the_same_job(client):
    key = uuid.uuid4().hex
    first = submit(client, key, DIGIT)
    again = submit(client, key, DIGIT)
    assert first.status_code == again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["kind"] == "digits"


CHANGES = {  # first request's params -> (second image, its params)
    "other image": ({}, OTHER, {}),
    "other kind": ({}, DIGIT, {"kind": "postcode"}),  # the same bytes, read as a code
    "other options": ({"kind": "postcode"}, DIGIT, {"kind": "postcode", "length": 1}),
}


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_the_key_reused_for_a_different_request_is_a_409(client, change):
    params, image, other = CHANGES[change]
    key = uuid.uuid4().hex
    first = submit(client, key, DIGIT, **params)
    assert first.status_code == 202, first.text
    reused = submit(client, key, image, **other)
    assert reused.status_code == 409, reused.text
    error = reused.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert "different request" in error["message"] and first.json()["id"] in error["message"]
    # the original binding is untouched: its own retry still finds it
    assert submit(client, key, DIGIT, **params).json()["id"] == first.json()["id"]


def test_a_binding_made_before_digests_were_stored_still_answers(client, redis_server):
    key = uuid.uuid4().hex
    first = submit(client, uuid.uuid4().hex, DIGIT).json()["id"]
    redis_server.client().set(_idempotency_key("", key), first, ex=60)  # the old format
    assert submit(client, key, DIGIT).json()["id"] == first


def test_keys_are_scoped_per_api_key(redis_server, worker):
    port = free_port()
    api = start_api(redis_server.url, port, name="api-keys", DIGITS_API_KEYS="alice-key,bob-key")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            alice = {"X-API-Key": "alice-key"}
            bob = {"Authorization": "Bearer bob-key"}
            files = {"file": ("x.png", DIGIT, "image/png")}
            other = {"file": ("x.png", OTHER, "image/png")}
            key = {"Idempotency-Key": "order-1"}
            a = http.post("/v1/jobs", files=files, headers={**alice, **key})
            b = http.post("/v1/jobs", files=other, headers={**bob, **key})  # no 409: not hers
            assert a.status_code == b.status_code == 202, b.text
            assert a.json()["id"] != b.json()["id"]
            again = http.post("/v1/jobs", files=other, headers={**bob, **key})
            assert again.json()["id"] == b.json()["id"]
            clash = http.post("/v1/jobs", files=other, headers={**alice, **key})
            assert clash.status_code == 409, clash.text
    finally:
        api.stop()
