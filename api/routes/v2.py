"""Open Inference Protocol v2 (KServe, Triton, MLServer clients): health, metadata, infer.

`infer` rides the very path of `POST /v1/predict`: the same admission (`admit_sync`), body
limit, normalisation of encoded images, batcher, queue and 2 s deadline
(`PredictionService.answer`); only the tensors in and out differ (`api.serving.oip`). The protocol
has no "come back later": a request not answered within DIGITS_SYNC_WAIT_MAX_S is a 504 with the
protocol's `{"error": "..."}`, never a late answer. Errors under /v2 take that shape
(`api.errors.error_response`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api import catalog
from api.config import ApiSettings
from api.deps import SettingsDep, StoreDep, require_api_key, service_of, settings_of
from api.errors import ApiError, json_response
from api.openapi import error_responses, inline_schema
from api.routes.health import ready_workers
from api.schemas import (
    V2Error,
    V2InferRequest,
    V2InferResponse,
    V2Live,
    V2ModelMetadata,
    V2ModelReady,
    V2Ready,
    V2ServerMetadata,
)
from api.serving import oip
from api.serving.deadline import arrived_at
from api.serving.inputs import OFFLOAD_BYTES, OFFLOAD_IMAGES, Prepared, prepare_digits, read_body
from common.contract import JobStatus

SERVER_NAME = "digits"
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data"]

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])
models = APIRouter(
    prefix="/v2/models/{name}",
    tags=["open inference protocol (v2)"],
    dependencies=[Depends(require_api_key)],
)
Name = Annotated[
    str,
    Path(max_length=100, description="Model name (`GET /v1/models`).", examples=["mnist_cnn"]),
]
Version = Annotated[str, Path(max_length=20, description="A published version number.")]


def _errors(statuses: list[int]) -> dict:
    return error_responses(statuses, model=V2Error)


_NOT_READY: dict[int | str, dict[str, Any]] = {
    400: {"description": "Not ready (the protocol's 4xx = false)", "model": V2Error}
}


@router.get("/health/live", responses={200: {"model": V2Live}})
async def live() -> Response:
    return json_response({"live": True})


@router.get("/health/ready", responses={200: {"model": V2Ready}, **_NOT_READY})
async def ready(store: StoreDep, settings: SettingsDep) -> Response:
    """Ready = Redis reachable and a worker with a loaded model seen (as `/readyz`)."""
    try:
        await ready_workers(store, settings.worker_stale_s)
    except ApiError as exc:
        return json_response({"error": exc.message}, 400)
    return json_response({"ready": True})


@router.get("", responses={200: {"model": V2ServerMetadata}})
async def server_metadata(request: Request) -> Response:
    return json_response(
        {"name": SERVER_NAME, "version": request.app.version, "extensions": EXTENSIONS}
    )


def _known(settings: ApiSettings, name: str, version: str | None) -> catalog.Catalog:
    """The registry entry of `name` (and `version`, when given); 404 for unknown ones."""
    found = catalog.read(settings.models_dir, name) if name == settings.model_name else None
    if found is None or not found.versions:
        raise ApiError("model_not_found", f"unknown model {name!r}", status_code=404)
    if version is not None and not found.knows(version):
        raise ApiError(
            "version_not_found",
            f"model {name!r} has no version {version!r} (versions: {found.versions})",
            status_code=404,
        )
    return found


def _served(settings: ApiSettings, name: str, version: str | None) -> catalog.Catalog:
    """Like `_known`, and `version` (when given) is the one the workers answer with."""
    found = _known(settings, name, version)
    if found.served is None:
        raise ApiError(
            "no_served_version", f"model {name!r} has no production version", status_code=503
        )
    if version is not None and int(version) != found.served:
        raise ApiError(
            "version_not_served",
            f"version {version} of {name!r} is published but not served "
            f"(served: {found.served}); omit the version or ask for {found.served}",
            status_code=400,
        )
    return found


async def _metadata(settings: ApiSettings, name: str, version: str | None) -> Response:
    found = await run_in_threadpool(_known, settings, name, version)
    if version is not None:
        versions = [str(int(version))]
    else:
        versions = [str(found.served)] if found.served is not None else []
    return json_response(oip.model_metadata(name, versions, PLATFORM))


async def _model_ready(store, settings: ApiSettings, name: str, version: str | None) -> Response:
    found = await run_in_threadpool(_known, settings, name, version)
    body = {"name": name, "version": version, "ready": False}
    try:
        await run_in_threadpool(_served, settings, name, version)
        await ready_workers(store, settings.worker_stale_s)
    except ApiError as exc:
        return json_response({"error": exc.message}, 400)
    body.update(ready=True, version=version or str(found.served))
    return json_response(body)


async def _prepare(parsed: oip.InferRequest, body_size: int, max_pixels: int) -> Prepared:
    if parsed.datatype != "BYTES":
        return oip.prepared_tensor(oip.numeric_images(parsed))
    items = oip.encoded_items(parsed)
    if body_size > OFFLOAD_BYTES or len(items) > OFFLOAD_IMAGES:
        return await run_in_threadpool(prepare_digits, items, max_pixels)
    return prepare_digits(items, max_pixels)


async def _infer(
    request: Request, service, settings: ApiSettings, name: str, version: str | None
) -> Response:
    _served(settings, name, version)
    await service.admit_sync()
    body = await read_body(request, settings.max_body_bytes)
    parsed = oip.parse(body, request.headers.get(oip.HEADER_LENGTH), settings.max_batch_images)
    prepared = await _prepare(parsed, len(body), settings.max_image_pixels)
    wait_s = settings.sync_wait_max_s
    answer = await service.answer(prepared, wait_s, arrived_at(request))
    if answer.view is None:
        raise ApiError(
            "deadline_exceeded",
            f"no answer within {wait_s:g} s (job {answer.job_id} is {answer.status}); retry",
            status_code=504,
        )
    if answer.view["status"] == JobStatus.FAILED:
        error = answer.view.get("error") or {}
        raise ApiError(
            error.get("code", "inference_failed"),
            error.get("message", "inference failed"),
            status_code=500,
        )
    content, headers = oip.response(answer.view, parsed, name)
    media = "application/octet-stream" if headers else "application/json"
    return Response(content, 200, headers, media_type=media)


_INFER = {
    "requestBody": {
        "required": True,
        "description": "JSON tensors; or, with the binary tensor extension, the JSON header "
        "(its length in `Inference-Header-Content-Length`) followed by raw tensor bytes.",
        "content": {
            "application/json": {"schema": inline_schema(V2InferRequest)},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_INFER_RESPONSES = {
    200: {
        "model": V2InferResponse,
        "description": "JSON outputs; with binary outputs, this JSON header (its length in "
        "`Inference-Header-Content-Length`) followed by the raw output bytes",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    **_errors([400, 401, 404, 413, 415, 422, 500, 503, 504]),
}
_METADATA_RESPONSES = {200: {"model": V2ModelMetadata}, **_errors([401, 404])}
_READY_RESPONSES = {200: {"model": V2ModelReady}, **_NOT_READY, **_errors([401, 404])}


@models.get("", responses=_METADATA_RESPONSES)
async def model_metadata(settings: SettingsDep, name: Name) -> Response:
    """Inputs and outputs (datatypes, shapes); `versions` lists the served version."""
    return await _metadata(settings, name, None)


@models.get("/versions/{version}", responses=_METADATA_RESPONSES)
async def version_metadata(settings: SettingsDep, name: Name, version: Version) -> Response:
    return await _metadata(settings, name, version)


@models.get("/ready", responses=_READY_RESPONSES)
async def model_ready(store: StoreDep, settings: SettingsDep, name: Name) -> Response:
    return await _model_ready(store, settings, name, None)


@models.get("/versions/{version}/ready", responses=_READY_RESPONSES)
async def version_ready(
    store: StoreDep, settings: SettingsDep, name: Name, version: Version
) -> Response:
    return await _model_ready(store, settings, name, version)


@models.post("/infer", openapi_extra=_INFER, responses=_INFER_RESPONSES)
async def infer(request: Request, name: Name) -> Response:
    """`image`: UINT8/FP32 `[N,28,28]` (or `[N,28,28,1]`) tensors taken as they are, or BYTES
    `[N]` encoded images normalised like v1. Outputs: `digit`, `confidence`,
    `probabilities`, `needs_review`. Answered within 2 s or 504."""
    return await _infer(request, service_of(request), settings_of(request), name, None)


@models.post("/versions/{version}/infer", openapi_extra=_INFER, responses=_INFER_RESPONSES)
async def version_infer(request: Request, name: Name, version: Version) -> Response:
    return await _infer(request, service_of(request), settings_of(request), name, version)
