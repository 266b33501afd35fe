"""Every malformed request gets a 4xx with a JSON body that says what is wrong."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.integration.conftest import png_bytes

pytestmark = pytest.mark.integration

PNG = png_bytes(np.zeros((28, 28), np.uint8) + 255)


def _raw(data: bytes, content_type: str = "image/png") -> dict:
    return {"content": data, "headers": {"Content-Type": content_type}}


CASES = {
    "empty body": (_raw(b""), 400),
    "unknown content type": (_raw(b"hello", "text/plain"), 415),
    "no content type": ({"content": b"hello"}, 415),
    "truncated png": (_raw(PNG[: len(PNG) // 2]), 422),
    "text named png": (_raw(b"this is not an image at all"), 415),
    "svg": (_raw(b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "image/svg+xml"), 415),
    "invalid json": (_raw(b"{nope", "application/json"), 400),
    "json NaN": (_raw(b'{"images": [NaN]}', "application/json"), 400),
    "json not an object": ({"json": [1, 2, 3]}, 422),
    "json images empty": ({"json": {"images": []}}, 422),
    "json image not str or list": ({"json": {"images": [{"a": 1}]}}, 422),
    "json bad base64": ({"json": {"images": ["***"]}}, 422),
    "array wrong shape": ({"json": {"images": [[[0, 1], [2, 3]]]}}, 422),
    "array of strings": ({"json": {"images": [[["x"] * 28] * 28]}}, 422),
    "array out of range": ({"json": {"images": [[[999] * 28] * 28]}}, 422),
    "too many images": ({"json": {"images": [[[0] * 28] * 28] * 257}}, 413),
    "too many multipart files": ({"files": [("file", ("a.png", PNG, "image/png"))] * 257}, 413),
    "multipart without file part": ({"files": {"other": ("a.png", PNG, "image/png")}}, 422),
    "multipart without boundary": (_raw(b"--x\r\nbroken", "multipart/form-data"), 400),
    "multipart with no parts": (_raw(b"--x\r\nbroken", "multipart/form-data; boundary=x"), 422),
    "wait above the 2 s cap": ({"json": {"images": [[[0] * 28] * 28]}, "params": {"wait": 5}}, 422),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_gets_a_clear_4xx(client, case):
    request, status = CASES[case]
    response = client.post("/v1/predict", **request)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]


def test_body_over_the_limit_is_413(client):
    response = client.post("/v1/predict", **_raw(b"\0" * (21 * 1024 * 1024)))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_unknown_job_ids_of_any_shape_are_404(client):
    for job_id in ("0" * 32, "x" * 200, "%00"):
        response = client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 404, job_id
        assert response.json()["error"]["code"] == "job_not_found"


def test_the_bad_image_is_named_by_index(client):
    good = base64.b64encode(PNG).decode()
    response = client.post("/v1/predict", json={"images": [good, good, "bm90IGFuIGltYWdl"]})
    assert response.status_code in (415, 422)
    assert response.json()["error"]["index"] == 2
