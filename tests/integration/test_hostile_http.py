"""Hostile files over HTTP: a clear 4xx (or a correct answer), fast, never a 5xx or a hang."""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.integration


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def digit_canvas(mode: str = "L") -> Image.Image:
    canvas = np.full((60, 60), 255, np.uint8)
    canvas[10:50, 27:33] = 0  # a "1": dark ink on white
    return Image.fromarray(canvas).convert(mode)


def post_raw(client, data: bytes, content_type: str = "image/png") -> httpx.Response:
    started = time.monotonic()
    response = client.post("/v1/predict", content=data, headers={"Content-Type": content_type})
    assert time.monotonic() - started < 3.0
    return response


def test_decompression_bomb_is_refused_before_decoding(client):
    bomb = encoded(Image.new("1", (15_000, 15_000)), "PNG")
    assert len(bomb) < 100_000
    response = post_raw(client, bomb)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "too_large"


def test_ten_megabytes_of_zeros(client):
    response = post_raw(client, b"\0" * (10 * 1024 * 1024))
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_format"


def test_truncated_jpeg(client):
    jpeg = encoded(digit_canvas("RGB"), "JPEG", quality=80)
    response = post_raw(client, jpeg[: len(jpeg) // 2], "image/jpeg")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "undecodable"


def test_chunked_body_over_the_limit_is_413(client):
    def chunks():
        for _ in range(25):
            yield b"\0" * (1024 * 1024)

    response = client.post("/v1/predict", content=chunks(), headers={"Content-Type": "image/png"})
    assert response.status_code == 413


@pytest.mark.parametrize(
    "name,data",
    [
        ("cmyk jpeg", lambda: encoded(digit_canvas("CMYK"), "JPEG")),
        ("16-bit png", lambda: encoded(digit_canvas("I;16"), "PNG")),
        ("palette gif", lambda: encoded(digit_canvas("P"), "GIF")),
        (
            "animated gif",
            lambda: encoded(
                digit_canvas("P"), "GIF", save_all=True, append_images=[Image.new("P", (60, 60))]
            ),
        ),
        ("webp", lambda: encoded(digit_canvas("RGB"), "WEBP")),
        ("bmp", lambda: encoded(digit_canvas("RGB"), "BMP")),
        ("transparent png", lambda: encoded(_transparent(), "PNG")),
    ],
)
def test_unusual_but_valid_images_are_read(client, name, data):
    response = post_raw(client, data(), "application/octet-stream")
    assert response.status_code == 200, f"{name}: {response.text}"
    assert response.json()["predictions"][0]["digit"] == 1, name


def _transparent() -> Image.Image:
    canvas = Image.new("RGBA", (60, 60), (0, 0, 0, 0))
    ink = np.zeros((60, 60, 4), np.uint8)
    ink[10:50, 27:33] = (0, 0, 0, 255)  # black ink on a transparent canvas
    return Image.alpha_composite(canvas, Image.fromarray(ink, "RGBA"))
