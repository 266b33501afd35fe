"""Open Inference Protocol (KServe v2) tensors <-> the service's own request and answer.

Request: exactly one input tensor, `image`:
- `UINT8` `[N, 28, 28]` or `[N, 28, 28, 1]`: already normalised (white ink 255 on black 0,
  as MNIST), taken as they are, like v1's 28x28 arrays;
- `FP32`, same shapes, in 0..1 (the model's own input scale): quantised to the 8-bit wire
  contract (`round(x * 255)`), otherwise taken as they are;
- `BYTES` `[N]` (or `[N, 1]`): encoded images (PNG, JPEG, ...), decoded and normalised exactly
  as v1 does (`api.serving.inputs.prepare_digits`); in JSON each element is base64 text.
Data comes as JSON `data` (row-major, flat or nested) or, with the binary tensor extension,
as raw little-endian bytes after the JSON header (`Inference-Header-Content-Length`;
`parameters.binary_data_size` per tensor; BYTES elements are 4-byte length-prefixed).

Answer: `digit` INT64 `[N]` (-1 for an image without ink), `confidence` FP32 `[N]`,
`probabilities` FP32 `[N, 10]` (zeros for an image without ink), `needs_review` BOOL `[N]`;
each as JSON `data` or binary (`binary_data` per requested output, or
`parameters.binary_data_output` for all).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from api.errors import ApiError
from api.serving.inputs import Item, Prepared
from common.contract import IMAGE_SIDE, JobKind

INPUT_NAME = "image"
HEADER_LENGTH = "inference-header-content-length"
OUTPUTS = {
    "digit": ("INT64", np.int64, [-1]),
    "confidence": ("FP32", np.float32, [-1]),
    "probabilities": ("FP32", np.float32, [-1, 10]),
    "needs_review": ("BOOL", np.bool_, [-1]),
}
"""Output name -> (protocol datatype, numpy dtype on the wire, shape in the metadata)."""
_NUMERIC: dict[str, np.dtype] = {"UINT8": np.dtype("<u1"), "FP32": np.dtype("<f4")}
_IMAGE_SHAPES = ((IMAGE_SIDE, IMAGE_SIDE), (IMAGE_SIDE, IMAGE_SIDE, 1))


def bad(message: str, status_code: int = 400) -> ApiError:
    return ApiError("invalid_inference_request", message, status_code=status_code)


def model_metadata(name: str, versions: list[str], platform: str) -> dict[str, Any]:
    return {
        "name": name,
        "versions": versions,
        "platform": platform,
        "inputs": [{"name": INPUT_NAME, "datatype": "UINT8", "shape": [-1, 28, 28]}],
        "outputs": [
            {"name": name, "datatype": datatype, "shape": shape}
            for name, (datatype, _, shape) in OUTPUTS.items()
        ],
    }


@dataclass
class InferRequest:
    id: str | None
    datatype: str
    shape: list[int]
    raw: bytes | None
    """The tensor's binary data (binary extension), else None and `data` holds it."""
    data: Any
    outputs: dict[str, bool]
    """Requested output name -> as binary."""


def parse(body: bytes, header_length: str | None, max_images: int) -> InferRequest:
    """The request's JSON header and tensor data; 400 for anything the protocol forbids."""
    binary = b""
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise bad("Inference-Header-Content-Length is not a number") from None
        if not 0 < length <= len(body):
            raise bad("Inference-Header-Content-Length is outside the body")
        body, binary = body[:length], body[length:]
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad(f"the inference request is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise bad("the inference request must be a JSON object")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise bad(f"expected exactly one input tensor, '{INPUT_NAME}'")
    tensor = inputs[0]
    if tensor.get("name") != INPUT_NAME:
        raise bad(f"unknown input {tensor.get('name')!r}; the model's input is '{INPUT_NAME}'")
    datatype, shape = tensor.get("datatype"), tensor.get("shape")
    if datatype not in ("UINT8", "FP32", "BYTES"):
        raise bad(f"input datatype {datatype!r} is not accepted: UINT8, FP32 or BYTES")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise bad("input shape must be a list of non-negative integers")
    if datatype == "BYTES":
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise bad("a BYTES input has shape [N] or [N, 1]: one encoded image per element")
    elif tuple(shape[1:]) not in _IMAGE_SHAPES:
        raise bad(f"a {datatype} input has shape [N, 28, 28] or [N, 28, 28, 1], not {shape}")
    if not 1 <= shape[0] <= max_images:
        raise bad(
            f"{shape[0]} images in one request; 1 to {max_images} are accepted",
            413 if shape[0] > max_images else 400,
        )
    raw, data = _tensor_data(tensor, binary)
    request_id = document.get("id")
    return InferRequest(
        request_id if isinstance(request_id, str) else None,
        datatype,
        shape,
        raw,
        data,
        _requested_outputs(document),
    )


def _parameters(value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad("parameters must be a JSON object")
    return value


def _tensor_data(tensor: dict, binary: bytes) -> tuple[bytes | None, Any]:
    size = _parameters(tensor.get("parameters")).get("binary_data_size")
    if size is None:
        if "data" not in tensor:
            raise bad("the input has neither 'data' nor parameters.binary_data_size")
        if binary:
            raise bad("binary data follows the header, but no tensor claims it")
        return None, tensor["data"]
    if not isinstance(size, int) or isinstance(size, bool) or size != len(binary):
        raise bad(f"binary_data_size {size!r} does not match the {len(binary)} bytes sent")
    return binary, None


def _requested_outputs(document: dict) -> dict[str, bool]:
    default_binary = bool(_parameters(document.get("parameters")).get("binary_data_output"))
    wanted = document.get("outputs")
    if wanted is None:
        return dict.fromkeys(OUTPUTS, default_binary)
    if not isinstance(wanted, list):
        raise bad("outputs must be a list")
    chosen: dict[str, bool] = {}
    for output in wanted:
        name = output.get("name") if isinstance(output, dict) else None
        if name not in OUTPUTS:
            raise bad(f"unknown output {name!r}; outputs: {', '.join(OUTPUTS)}")
        binary = _parameters(output.get("parameters")).get("binary_data", default_binary)
        chosen[name] = bool(binary)
    return chosen


def numeric_images(request: InferRequest) -> np.ndarray:
    """(N, 28, 28) uint8 from a UINT8 or FP32 tensor: no per-image Python work."""
    count = int(np.prod(request.shape))
    dtype = _NUMERIC[request.datatype]
    if request.raw is not None:
        if len(request.raw) != count * dtype.itemsize:
            raise bad(f"{len(request.raw)} bytes do not hold a {request.datatype} {request.shape}")
        values = np.frombuffer(request.raw, dtype=dtype)
    else:
        values = _json_values(request.data, count, request.datatype)
    images = values.reshape(request.shape[0], IMAGE_SIDE, IMAGE_SIDE)
    if request.datatype == "UINT8":
        return images.astype(np.uint8, copy=False)
    if not np.isfinite(images).all() or images.min() < 0.0 or images.max() > 1.0:
        raise bad("FP32 values must be finite and within 0..1", 422)
    return np.rint(images * np.float32(255.0)).astype(np.uint8)


def _json_values(data: Any, count: int, datatype: str) -> np.ndarray:
    if not isinstance(data, list):
        raise bad("'data' must be a list of numbers")
    try:
        values = np.array(data).ravel()
    except (ValueError, TypeError, OverflowError):
        raise bad("'data' must be a (flat or nested) list of numbers") from None
    if values.size != count:
        raise bad(f"'data' has {values.size} values; the shape needs {count}")
    if values.dtype.kind not in "iuf":
        raise bad("'data' values must be numbers")
    if datatype == "UINT8":
        if values.dtype.kind == "f" and not np.equal(np.mod(values, 1), 0).all():
            raise bad("UINT8 values must be integers", 422)
        if values.min() < 0 or values.max() > 255:
            raise bad("UINT8 values must be within 0..255", 422)
        return values.astype(np.uint8)
    return values.astype(np.float32)


def encoded_items(request: InferRequest) -> list[Item]:
    """The encoded images of a BYTES tensor, for v1's own decoding and normalisation."""
    count = request.shape[0]
    if request.raw is None:
        if not isinstance(request.data, list):
            raise bad("'data' must be a list of base64 strings")
        flat = request.data
        if len(flat) == count and all(isinstance(v, list) and len(v) == 1 for v in flat):
            flat = [v[0] for v in flat]
        if len(flat) != count or not all(isinstance(v, str) for v in flat):
            raise bad(f"'data' must hold {count} base64 strings")
        items: list[Item] = []
        for index, text in enumerate(flat):
            try:
                items.append(base64.b64decode(text, validate=True))
            except (binascii.Error, ValueError):
                raise ApiError(
                    "invalid_base64", "element is not valid base64", status_code=400, index=index
                ) from None
        return items
    return _length_prefixed(request.raw, count)


def _length_prefixed(raw: bytes, count: int) -> list[Item]:
    items: list[Item] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise bad("BYTES data ends inside an element's 4-byte length")
        size = int.from_bytes(raw[offset : offset + 4], "little")
        offset += 4
        if offset + size > len(raw):
            raise bad("a BYTES element is longer than the data sent")
        items.append(raw[offset : offset + size])
        offset += size
    if len(items) != count:
        raise bad(f"{len(items)} BYTES elements sent; the shape says {count}")
    return items


def prepared_tensor(images: np.ndarray) -> Prepared:
    """A v2 numeric tensor as a digits job: images without ink are answered `no_digit_found`
    without a guess, like v1's arrays."""
    blank = np.flatnonzero(~images.reshape(len(images), -1).any(axis=1)).tolist()
    return Prepared(JobKind.DIGITS, np.ascontiguousarray(images), {"blank": blank} if blank else {})


def response(
    view: dict, request: InferRequest, model_name: str
) -> tuple[bytes, dict[str, str] | None]:
    """The inference response body (JSON header plus binary outputs) and its extra headers."""
    answers = view["predictions"]
    count = len(answers)
    tensors: dict[str, np.ndarray] = {}
    wanted = request.outputs
    if "digit" in wanted:
        tensors["digit"] = np.array(
            [-1 if a["digit"] is None else a["digit"] for a in answers], dtype=np.int64
        )
    if "confidence" in wanted:
        tensors["confidence"] = np.array([a["confidence"] for a in answers], dtype=np.float64)
    if "probabilities" in wanted:
        probabilities = np.zeros((count, 10), dtype=np.float64)
        for row, answer in enumerate(answers):
            if answer["probabilities"] is not None:
                probabilities[row] = answer["probabilities"]
        tensors["probabilities"] = probabilities
    if "needs_review" in wanted:
        tensors["needs_review"] = np.array([a["needs_review"] for a in answers], dtype=np.bool_)
    # NOTE: JSON floats keep the answer's own 6-decimal values; binary ones are float32.
    outputs, chunks = [], []
    for name, binary in wanted.items():
        array = tensors[name]
        entry: dict[str, Any] = {
            "name": name,
            "datatype": OUTPUTS[name][0],
            "shape": list(array.shape),
        }
        if binary:
            wire = np.dtype(OUTPUTS[name][1]).newbyteorder("<")  # FP32 on the wire
            chunk = np.ascontiguousarray(array, dtype=wire).tobytes()
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = array.ravel().tolist()
        outputs.append(entry)
    header = {
        "model_name": model_name,
        "model_version": str(view.get("model_version", "")),
        "outputs": outputs,
    }
    if request.id is not None:
        header["id"] = request.id
    body = orjson.dumps(header)
    if not chunks:
        return body, None
    return body + b"".join(chunks), {"Inference-Header-Content-Length": str(len(body))}
