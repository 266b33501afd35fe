"""Typed access to the per-process objects the lifespan creates.

NOTE: `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, a
thread hand-off per dependency per request (profiled at ~10 % of the API's CPU).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.config import ApiSettings
from api.errors import ApiError
from api.serving.jobs import JobStore
from api.serving.service import PredictionService


async def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


async def get_service(request: Request) -> PredictionService:
    return request.app.state.service


async def get_store(request: Request) -> JobStore:
    return request.app.state.store


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ServiceDep = Annotated[PredictionService, Depends(get_service)]
StoreDep = Annotated[JobStore, Depends(get_store)]


_API_KEY = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    description="One of DIGITS_API_KEYS (only when the service is configured with keys).",
    auto_error=False,
)
_BEARER = HTTPBearer(
    scheme_name="Bearer", description="`Authorization: Bearer <key>`, same keys.", auto_error=False
)


async def require_api_key(
    request: Request,
    settings: SettingsDep,
    # NOTE: declared for the OpenAPI securitySchemes ("Authorize" in /docs); the headers are
    # read below, so a malformed Authorization header is a 401 of ours, not FastAPI's 403.
    _key: Annotated[str | None, Security(_API_KEY)] = None,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
) -> None:
    """When DIGITS_API_KEYS is set, /v1/* and /v2/models/* need `Authorization: Bearer <key>` or
    `X-API-Key: <key>`."""
    keys = settings.api_key_set
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
