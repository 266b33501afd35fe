"""Turns a request body into normalised 28x28 images, or a 4xx that says what is wrong.

Accepted forms (every prediction endpoint): a raw image body (`image/png`, `image/jpeg`, ...),
`multipart/form-data` with parts named `file`, or JSON `{"images": [...]}` whose items are
base64 PNG/JPEG strings or 28x28 arrays of numbers. The format is decided from the bytes,
never from the declared type or a filename.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request

from api.errors import ApiError
from common.contract import IMAGE_SIDE, JobKind
from common.imaging import ImageError, decode, from_array, normalise
from common.segmentation import segment

RAW_IMAGE_TYPES = frozenset(
    {
        "application/octet-stream",
        "image/png",
        "image/jpeg",
        "image/jpg",
        "image/webp",
        "image/bmp",
        "image/gif",
        "image/tiff",
    }
)
_STATUS_FOR_IMAGE_ERROR = {"unsupported_format": 415, "too_large": 413, "empty": 400}
OFFLOAD_BYTES = 64 * 1024
OFFLOAD_IMAGES = 8
"""Bodies bigger than OFFLOAD_BYTES or with more than OFFLOAD_IMAGES images are decoded in a
thread, so the event loop keeps serving single-image requests meanwhile."""

Item = bytes | list
"""One image as sent: encoded bytes, or a nested list of numbers."""


@dataclass
class Prepared:
    """What the worker needs for one request: its images and how to read the answers."""

    kind: JobKind
    images: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing more than `limit` bytes whether declared or streamed."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _too_large(limit)
        except ValueError:
            raise ApiError("invalid_request", "Content-Length is not a number") from None
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError("client_disconnected", "the request body was not received") from None
    body = b"".join(chunks)
    request._body = body  # NOTE: lets request.form() parse the buffered body
    return body


def _too_large(limit: int) -> ApiError:
    return ApiError("body_too_large", f"request body exceeds {limit} bytes", status_code=413)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_items(request: Request, body: bytes, max_images: int) -> list[Item]:
    kind = media_type(request)
    if kind in RAW_IMAGE_TYPES or kind.startswith("image/"):
        if not body:
            raise ApiError("empty_body", "the request body is empty")
        items: list[Item] = [body]
    elif kind == "multipart/form-data":
        items = await _multipart_items(request, max_images)
    elif kind == "application/json":
        items = _json_items(body)
    else:
        raise ApiError(
            "unsupported_media_type",
            f"Content-Type {kind or '(none)'} is not accepted; send an image, "
            "multipart/form-data with 'file' parts, or application/json {\"images\": [...]}",
            status_code=415,
        )
    if len(items) > max_images:
        raise ApiError(
            "too_many_images",
            f"{len(items)} images in one request; the limit is {max_images}",
            status_code=413,
        )
    return items


async def _multipart_items(request: Request, max_images: int) -> list[Item]:
    try:
        form = await request.form(max_files=max_images, max_fields=max_images + 16)
    except MultiPartException as exc:
        raise ApiError(
            "malformed_multipart", f"multipart body could not be parsed: {exc}"
        ) from None
    except HTTPException as exc:  # Starlette's own limits (too many files or fields)
        if "Too many files" in str(exc.detail):
            raise ApiError(
                "too_many_images", f"more than {max_images} files in one request", status_code=413
            ) from None
        raise ApiError("malformed_multipart", str(exc.detail)) from None
    try:
        parts = form.getlist("file")
        if not parts:
            raise ApiError(
                "missing_file",
                "multipart body has no complete part named 'file' (is the body truncated?)",
                status_code=422,
            )
        items: list[Item] = []
        for index, part in enumerate(parts):
            data = await part.read() if isinstance(part, UploadFile) else part.encode()
            if not data:
                raise ApiError("empty_image", "part 'file' is empty", index=index)
            items.append(data)
        return items
    finally:
        await form.close()


def _json_items(body: bytes) -> list[Item]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError("invalid_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise ApiError(
            "invalid_request", 'expected a JSON object {"images": [...]}', status_code=422
        )
    images = document["images"]
    if not images:
        raise ApiError("no_images", "'images' is empty", status_code=422)
    items: list[Item] = []
    for index, value in enumerate(images):
        if isinstance(value, str):
            items.append(_base64(value, index))
        elif isinstance(value, list):
            items.append(value)
        else:
            raise ApiError(
                "invalid_image",
                "each image is a base64 string or a 28x28 array of numbers",
                status_code=422,
                index=index,
            )
    return items


def _base64(value: str, index: int) -> bytes:
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]  # data URLs from browsers
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            "invalid_base64", "image is not valid base64", status_code=422, index=index
        ) from None
    if not data:
        raise ApiError("empty_image", "image is empty", index=index)
    return data


def image_error(exc: ImageError, index: int) -> ApiError:
    status = _STATUS_FOR_IMAGE_ERROR.get(exc.code, 422)
    return ApiError(exc.code, str(exc), status_code=status, index=index)


def _each(items: list[Item], convert: Callable[[Item], Any]) -> list[Any]:
    results = []
    for index, item in enumerate(items):
        try:
            results.append(convert(item))
        except ImageError as exc:
            raise image_error(exc, index) from None
    return results


def prepare_digits(items: list[Item], max_pixels: int) -> Prepared:
    """One 28x28 image per item; arrays pass through unchanged (already MNIST-shaped)."""

    def convert(item: Item) -> tuple[np.ndarray, bool]:
        if isinstance(item, list):
            array = from_array(item)
            return array, not array.any()
        normalised = normalise(decode(item, max_pixels=max_pixels))
        return normalised.image, normalised.blank

    converted = _each(items, convert)
    images = np.stack([image for image, _ in converted]).astype(np.uint8, copy=False)
    blank = [i for i, (_, is_blank) in enumerate(converted) if is_blank]
    return Prepared(JobKind.DIGITS, images, {"blank": blank} if blank else {})


def prepare_postcodes(items: list[Item], max_pixels: int, length: int | None) -> Prepared:
    """Each item is one postal code: segmented into digits, all of them in one batch."""

    def convert(item: Item):
        if isinstance(item, list):
            raise ImageError("bad_array", "postal codes are sent as encoded images, not arrays")
        return segment(decode(item, max_pixels=max_pixels), expected=length)

    groups: list[dict[str, Any]] = []
    crops: list[np.ndarray] = []
    blank: list[int] = []
    for segmentation in _each(items, convert):
        for crop in segmentation.crops:
            if crop.blank:
                blank.append(len(crops))
            crops.append(crop.image)
        groups.append(
            {
                "count": len(segmentation.crops),
                "boxes": [list(map(int, box)) for box in segmentation.boxes],
                "length": length,
                "doubtful": bool(segmentation.doubtful),
                "segmentation": list(segmentation.reasons),
            }
        )
    images = (
        np.stack(crops).astype(np.uint8, copy=False)
        if crops
        else np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    )
    meta: dict[str, Any] = {"groups": groups}
    if blank:
        meta["blank"] = blank
    return Prepared(JobKind.POSTCODE, images, meta)
