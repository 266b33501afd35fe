"""Domain errors carry their HTTP status; one set of handlers turns them into JSON.

Every error body has the same shape: `{"error": {"code", "message", "index"?}}`, except
under `/v2/`, where the Open Inference Protocol's `{"error": "<message>"}` is answered (same
status and headers): the routes raise the same errors either way.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import OutOfMemoryError, RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger(__name__)


def json_response(
    body: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status_code, headers, media_type="application/json")


class ApiError(Exception):
    status_code = 400

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status_code: int | None = None,
        index: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.index = index
        self.headers = headers
        if status_code is not None:
            self.status_code = status_code

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.index is not None:
            error["index"] = self.index
        return {"error": error}


class ServiceUnavailable(ApiError):
    """Redis or the workers cannot take work now: fail fast and say when to retry."""

    status_code = 503

    def __init__(self, code: str, message: str, retry_after_s: int = 1) -> None:
        super().__init__(code, message, headers={"Retry-After": str(retry_after_s)})


V2_PREFIX = "/v2"


def error_response(
    request: Request, body: dict[str, Any], status_code: int, headers: dict[str, str] | None
) -> Response:
    """`body` is `{"error": {...}}`; an Open Inference Protocol route gets its message alone."""
    path = request.url.path
    if path == V2_PREFIX or path.startswith(V2_PREFIX + "/"):
        body = {"error": body["error"]["message"]}
    return json_response(body, status_code, headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(request, exc.body(), exc.status_code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        body = {"error": {"code": "invalid_request", "message": message}}
        return error_response(request, body, 422, None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = {"error": {"code": code, "message": str(exc.detail)}}
        headers = dict(exc.headers) if exc.headers else None
        return error_response(request, body, exc.status_code, headers)

    @app.exception_handler(RedisError)
    async def _redis_down(request: Request, exc: RedisError) -> Response:
        log.warning("redis unavailable: %s", exc)
        if isinstance(exc, OutOfMemoryError):
            # maxmemory reached (noeviction): nothing new is stored until answers expire.
            error = ServiceUnavailable("store_full", "the job store is full; retry later", 5)
        else:
            error = ServiceUnavailable("redis_unavailable", "the job store is unavailable; retry")
        return error_response(request, error.body(), error.status_code, error.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        body = {"error": {"code": "internal_error", "message": "unexpected server error"}}
        return error_response(request, body, 500, None)
