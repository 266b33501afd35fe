"""Hostile and broken input at the decoder: always an ImageError, fast, memory bounded."""

from __future__ import annotations

import contextlib
import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from common.imaging import (
    DECODE_SIDE,
    DEFAULT_MAX_PIXELS,
    ImageError,
    decode,
    max_pixels_limit,
    prepare_digit,
    set_max_pixels,
)


def png_bytes(size: tuple[int, int] = (60, 40), mode: str = "L") -> bytes:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (120, 80), (200, 180, 160)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_bomb(side: int = 15_000) -> bytes:
    """A valid 1-bit side x side PNG of zeros: ~27 KB on disk, 225 Mpx decoded."""
    row = b"\x00" * (1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def code_of(data: bytes, **kw: int) -> str:
    with pytest.raises(ImageError) as err:
        decode(data, **kw)
    assert err.value.message
    return err.value.code


def code_message(data: bytes, **kw: int) -> tuple[str, str]:
    with pytest.raises(ImageError) as err:
        decode(data, **kw)
    return err.value.code, err.value.message


def test_pillow_pixel_limit_is_set_explicitly() -> None:
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS


def test_empty_body() -> None:
    assert code_of(b"") == "empty"


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9])
def test_truncated_png(cut: int) -> None:
    data = png_bytes()
    assert code_of(data[: int(len(data) * cut)]) == "undecodable"


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9])
def test_truncated_jpeg(cut: int) -> None:
    data = jpeg_bytes()
    assert code_of(data[: int(len(data) * cut)]) == "undecodable"


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is a text file named digit.png\n",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="28" '
        b'height="28"><circle cx="14" cy="14" r="8"/></svg>',
        b"<svg><script>alert(1)</script></svg>",
        b"%PDF-1.4\n",
        b'{"image": [[0]]}',
    ],
)
def test_text_and_svg_are_unsupported(data: bytes) -> None:
    assert code_of(data) == "unsupported_format"


def test_ten_megabytes_of_zeros() -> None:
    started = time.perf_counter()
    assert code_of(bytes(10 * 1024 * 1024)) == "unsupported_format"
    assert time.perf_counter() - started < 0.5


def test_decompression_bomb_is_refused_from_the_header() -> None:
    data = png_bomb()
    assert len(data) < 64_000
    started = time.perf_counter()
    assert code_of(data) == "too_large"
    assert time.perf_counter() - started < 0.2, "refused before decoding"


THIRTY_MPX = 5_478  # side of a square image of 30,008,484 pixels


@pytest.fixture()
def pixel_limit():
    """Set the process's limit like the API does at start-up; restored afterwards."""
    yield set_max_pixels
    set_max_pixels(DEFAULT_MAX_PIXELS)


def test_pillow_guard_follows_the_configured_limit(pixel_limit) -> None:
    data = png_bomb(THIRTY_MPX)
    with pytest.raises(ImageError) as refused:
        decode(data)  # the default: 25 Mpx
    assert refused.value.code == "too_large"
    assert f"{DEFAULT_MAX_PIXELS:,} pixels" in refused.value.message

    pixel_limit(100_000_000)
    assert Image.MAX_IMAGE_PIXELS == max_pixels_limit() == 100_000_000
    assert decode(data).shape == (DECODE_SIDE, DECODE_SIDE)  # Pillow's guard let it through


def test_every_too_large_message_quotes_the_one_limit(pixel_limit) -> None:
    pixel_limit(1_000_000)
    header = code_message(png_bytes((1_200, 1_000)))  # our header check
    bomb = code_message(png_bomb(2_000))  # Pillow's guard (4 Mpx > 2x the limit: an error)
    side = code_message(png_bomb(20_001), max_pixels=10**9)  # the per-side cap
    for code, message in (header, bomb, side):
        assert code == "too_large"
        assert "20,000 px per side" in message
    assert "1,000,000 pixels" in header[1] and "1,000,000 pixels" in bomb[1]
    assert "1,000,000,000 pixels" in side[1]


def test_a_larger_explicit_limit_raises_pillows_guard(pixel_limit) -> None:
    data = png_bomb(THIRTY_MPX)
    assert decode(data, max_pixels=31_000_000).shape == (DECODE_SIDE, DECODE_SIDE)
    assert Image.MAX_IMAGE_PIXELS == 31_000_000
    assert code_of(data, max_pixels=30_000_000) == "too_large"


def test_custom_pixel_limit() -> None:
    assert code_of(png_bytes((300, 300)), max_pixels=50_000) == "too_large"
    assert decode(png_bytes((300, 300)), max_pixels=90_000).shape == (300, 300)


def test_gif_with_huge_logical_screen() -> None:
    buf = io.BytesIO()
    Image.new("P", (20, 20)).save(buf, "GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", 65_000, 65_000)  # logical screen width, height
    assert code_of(bytes(data)) in ("too_large", "undecodable")


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
        b"\xff\xd8\xff" + b"garbage" * 50,
        b"GIF89a" + b"\x01" * 30,
        b"BM" + b"\xff" * 60,
        b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 20,
        b"II*\x00" + b"\x00" * 40,
    ],
)
def test_right_magic_wrong_body(data: bytes) -> None:
    assert code_of(data) in ("undecodable", "too_large")


@pytest.mark.parametrize("make", [png_bytes, jpeg_bytes])
def test_random_corruption_never_escapes_as_another_exception(make) -> None:
    rng = np.random.default_rng(5)
    original = make()
    for _ in range(40):
        data = bytearray(original)
        for pos in rng.integers(0, len(data), size=rng.integers(1, 8)):
            data[pos] = int(rng.integers(0, 256))
        with contextlib.suppress(ImageError):
            prepare_digit(bytes(data))


def test_large_allowed_image_is_returned_at_working_size() -> None:
    # bounded work after decode, whatever the upload's resolution
    data = png_bytes((3000, 300))
    assert decode(data).shape == (128, 1280)
