"""`DIGITS_MAX_IMAGE_PIXELS` is the real limit: Pillow's own guard follows it in the API process."""

from __future__ import annotations

import httpx
import pytest

from harness.processes import free_port, start_api
from tests.unit.test_hostile_inputs import png_bomb

pytestmark = pytest.mark.integration

THIRTY_MPX = png_bomb(5_478)  # 30,008,484 pixels of white ink on black, ~100 KB


def _post(http: httpx.Client) -> httpx.Response:
    return http.post("/v1/predict", content=THIRTY_MPX, headers={"Content-Type": "image/png"})


def test_30_mpx_is_refused_at_the_default_limit(client):
    response = _post(client)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "too_large"
    assert "25,000,000 pixels (DIGITS_MAX_IMAGE_PIXELS)" in error["message"]


def test_30_mpx_is_read_when_max_image_pixels_allows_it(redis_server, worker):
    port = free_port()
    api = start_api(redis_server.url, port, name="api-100mpx", DIGITS_MAX_IMAGE_PIXELS="100000000")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            response = _post(http)
        assert response.status_code == 200, response.text
        # all black: no ink, so no guess (decoded, not refused by Pillow's 25 Mpx default)
        assert response.json()["predictions"][0]["reason"] == "no_digit_found"
    finally:
        api.stop()
