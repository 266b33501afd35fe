"""Typed access to the per-process objects the lifespan creates.

NOTE: `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, a
thread hand-off per dependency per request (profiled at ~10 % of the API's CPU). The hot
prediction routes do not use them at all: each dependency FastAPI solves costs ~13 µs a
request (docs/DESIGN.md, "The hot routes solve no dependencies"), so they call `service_of`
and `settings_of`, which the dependencies below are made of.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request

from api.config import ApiSettings
from api.errors import ApiError
from api.serving.jobs import JobStore
from api.serving.service import PredictionService


def settings_of(request: Request) -> ApiSettings:
    return request.app.state.settings


def service_of(request: Request) -> PredictionService:
    return request.app.state.service


async def get_settings(request: Request) -> ApiSettings:
    return settings_of(request)


async def get_service(request: Request) -> PredictionService:
    return service_of(request)


async def get_store(request: Request) -> JobStore:
    return request.app.state.store


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ServiceDep = Annotated[PredictionService, Depends(get_service)]
StoreDep = Annotated[JobStore, Depends(get_store)]


async def require_api_key(request: Request) -> None:
    """When DIGITS_API_KEYS is set, /v1/* and /v2/models/* need `Authorization: Bearer <key>` or
    `X-API-Key: <key>`.

    NOTE: the headers are read here, not through FastAPI's `Security(APIKeyHeader(...))`
    parameters (solved per request, ~25 µs): the OpenAPI document declares the schemes for
    every route this guards (`api.openapi.document_api_keys`), and a malformed Authorization
    header is a 401 of ours, not FastAPI's 403.
    """
    keys = settings_of(request).api_key_set
    if not keys:
        return
    given = request.headers.get("x-api-key", "")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if not any(secrets.compare_digest(given.encode(), key.encode()) for key in keys):
        raise ApiError(
            "unauthorized",
            "a valid API key is required (Authorization: Bearer <key> or X-API-Key)",
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.api_key = given


def caller(request: Request) -> str:
    """Who is asking, for scoping their Idempotency-Keys: the API key that passed
    `require_api_key`, or "" when the service has no keys (then there is one caller)."""
    return getattr(request.state, "api_key", "")
