"""Prediction routes: synchronous predict/postcodes, job submission and polling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.config import ApiSettings
from api.deps import (
    ServiceDep,
    SettingsDep,
    StoreDep,
    caller,
    require_api_key,
    service_of,
    settings_of,
)
from api.errors import ApiError, json_response
from api.openapi import (
    ACCEPTED_EXAMPLE,
    JOB_ERROR_RESPONSES,
    error_responses,
    image_request_body,
    prediction_responses,
)
from api.schemas import Accepted, JobView, PostcodeResult
from api.serving.deadline import arrived_at
from api.serving.inputs import (
    OFFLOAD_BYTES,
    OFFLOAD_IMAGES,
    Prepared,
    prepare_digits,
    prepare_postcodes,
    read_body,
    read_items,
)
from common.contract import JobKind

router = APIRouter(prefix="/v1", tags=["predictions"], dependencies=[Depends(require_api_key)])

_BODY = image_request_body(256)
Wait = Annotated[
    float, Query(ge=0.0, le=2.0, description="Seconds to wait for the answer before a 202 (max 2).")
]
Length = Annotated[
    int | None,
    Query(ge=1, le=32, description="Expected number of digits; a mismatch needs review."),
]


async def _prepare(
    request: Request, settings: ApiSettings, kind: JobKind, length: int | None
) -> Prepared:
    body = await read_body(request, settings.max_body_bytes)
    items = await read_items(request, body, settings.max_batch_images)
    work: Callable[..., Prepared]
    args: tuple
    if kind is JobKind.POSTCODE:
        work, args = prepare_postcodes, (items, settings.max_image_pixels, length)
    else:
        work, args = prepare_digits, (items, settings.max_image_pixels)
    if len(body) > OFFLOAD_BYTES or len(items) > OFFLOAD_IMAGES:
        return await run_in_threadpool(work, *args)
    return work(*args)


@router.post("/predict", openapi_extra=_BODY, responses=prediction_responses())
async def predict(request: Request, wait: Wait = 2.0) -> Response:
    """Read one or more digits; answers within `wait` seconds (200) or returns a job (202)."""
    # NOTE: service_of/settings_of, not ServiceDep/SettingsDep: no dependency to solve on the
    # hottest route (api/deps.py).
    service, settings = service_of(request), settings_of(request)
    await service.admit_sync()
    prepared = await _prepare(request, settings, JobKind.DIGITS, None)
    return await service.predict(prepared, min(wait, settings.sync_wait_max_s), arrived_at(request))


@router.post("/postcodes", openapi_extra=_BODY, responses=prediction_responses(PostcodeResult))
async def postcodes(request: Request, wait: Wait = 2.0, length: Length = None) -> Response:
    """Read whole postal codes: each image is segmented and its digits classified in one batch."""
    service, settings = service_of(request), settings_of(request)
    await service.admit_sync()
    prepared = await _prepare(request, settings, JobKind.POSTCODE, length)
    return await service.predict(prepared, min(wait, settings.sync_wait_max_s), arrived_at(request))


@router.post(
    "/jobs",
    status_code=202,
    openapi_extra=_BODY,
    responses={
        202: {
            "description": "Queued",
            "model": Accepted,
            "content": {"application/json": {"example": ACCEPTED_EXAMPLE}},
        },
        **JOB_ERROR_RESPONSES,
    },
)
async def submit_job(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    kind: JobKind = JobKind.DIGITS,
    length: Length = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="Retries of the same request with the same key return the same job; "
            "the key reused for a different request is a 409. Keys are per API key.",
        ),
    ] = None,
) -> Response:
    """Submit work for later: 202 with `status_url`; poll `GET /v1/jobs/{id}`."""
    prepared = await _prepare(request, settings, kind, length)
    return await service.submit(prepared, idempotency_key, caller(request))


@router.get(
    "/jobs/{job_id}",
    responses={
        200: {"description": "The job; its answer once done", "model": JobView},
        **error_responses({401: "", 404: "Unknown or expired job", 503: ""}),
    },
)
async def get_job(store: StoreDep, job_id: Annotated[str, Path(description="Job id")]) -> Response:
    """A job's status; its answer once done. Unknown or expired ids are 404."""
    view = await store.get(job_id) if len(job_id) <= 64 else None
    if view is None:
        raise ApiError("job_not_found", f"no job {job_id} (unknown or expired)", status_code=404)
    return json_response(view)
