"""OpenAPI descriptions of bodies the routes read by hand (raw images, multipart, JSON), and of
the error answers every route shares (`api.schemas` holds the models)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

from api.schemas import Accepted, DigitsResult, ErrorResponse, V2Error

_PNG_ONE = (
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAX0lEQVR4nGNgGAWDEfAv3Pj/e4mTMNE6Ev/8"
    "/fv3778qvCYo/Lx3796qVeHzaKMDLf//A3MfnLqBSBfx8QQyAyO7qfQzf+FDw1GR0GoQPqGQJGbKgWSyxqXU"
    "iAIAZHcRK5uVdFQAAAAASUVORK5CYII="
)


def image_request_body(max_images: int) -> dict:
    binary = {"type": "string", "format": "binary"}
    image_item = {
        "oneOf": [
            {"type": "string", "description": "base64 PNG/JPEG/WebP/BMP/GIF/TIFF"},
            {
                "type": "array",
                "description": "28x28 numbers, white ink on black: 0-255, or 0-1 floats",
                "items": {"type": "array", "items": {"type": "number"}},
            },
        ]
    }
    content: dict[str, dict[str, Any]] = {
        media: {"schema": binary}
        for media in ("image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif")
    }
    content["multipart/form-data"] = {
        "schema": {
            "type": "object",
            "properties": {"file": {"type": "array", "items": binary, "maxItems": max_images}},
            "required": ["file"],
        }
    }
    content["application/json"] = {
        "schema": {
            "type": "object",
            "required": ["images"],
            "properties": {
                "images": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": max_images,
                    "items": image_item,
                }
            },
        },
        "example": {"images": [_PNG_ONE]},
    }
    return {"requestBody": {"required": True, "content": content}}


def _error(description: str, code: str, message: str, model: type = ErrorResponse) -> dict:
    if model is V2Error:
        example: dict = {"error": message}
    else:
        example = {"error": {"code": code, "message": message, "index": 0}}
    return {
        "description": description,
        "model": model,
        "content": {"application/json": {"example": example}},
    }


_ERRORS = {
    400: ("Malformed body", "undecodable", "image could not be decoded"),
    401: ("Missing or wrong API key (when DIGITS_API_KEYS is set)", "unauthorized", "..."),
    404: ("Unknown job, review, model or version", "not_found", "..."),
    409: (
        "Idempotency-Key already used by this caller for a different request",
        "idempotency_key_reused",
        "...",
    ),
    413: ("Too many images or too large a body/image", "too_many_images", "..."),
    415: ("Unsupported content type or image format", "unsupported_format", "..."),
    422: ("Invalid image or parameters", "bad_array", "..."),
    500: ("Our own fault: inference failed or an unexpected error", "inference_failed", "..."),
    503: ("Redis or the workers cannot take the work; see Retry-After", "queue_unavailable", ""),
    504: ("No answer within the 2 s contract (the work is not answered late)", "deadline", ""),
}


def error_responses(statuses: dict[int, str] | list[int], model: type = ErrorResponse) -> dict:
    """OpenAPI responses for these error statuses (a description each, or the default one),
    plus `default`: whatever else goes wrong answers the same error schema."""
    described = statuses if isinstance(statuses, dict) else dict.fromkeys(statuses, "")
    responses: dict = {
        status: _error(text or _ERRORS[status][0], *_ERRORS[status][1:], model=model)
        for status, text in described.items()
    }
    responses["default"] = _error("Any other error", "http_error", "...", model=model)
    return responses


PREDICTION_EXAMPLE = {
    "id": "5f0c6a0e2b7d4a7e9a3f3c1d2e4b5a69",
    "status": "done",
    "kind": "digits",
    "model_version": "1",
    "predictions": [
        {
            "digit": 7,
            "confidence": 0.999812,
            "probabilities": [0, 0, 0.000011, 0.00002, 0, 0, 0, 0.999812, 0, 0.000157],
            "needs_review": False,
        }
    ],
}
ACCEPTED_EXAMPLE = {
    "id": "5f0c6a0e2b7d4a7e9a3f3c1d2e4b5a69",
    "status": "queued",
    "kind": "digits",
    "status_url": "/v1/jobs/5f0c6a0e2b7d4a7e9a3f3c1d2e4b5a69",
}

ERROR_RESPONSES = error_responses([400, 401, 413, 415, 422, 503])
"""The errors of every route that reads images."""
JOB_ERROR_RESPONSES = error_responses([400, 401, 409, 413, 415, 422, 503])
"""POST /v1/jobs: those, and a reused Idempotency-Key."""


def prediction_responses(model: type = DigitsResult) -> dict:
    example = PREDICTION_EXAMPLE if model is DigitsResult else None
    ok: dict = {"description": "Done within the wait", "model": model}
    if example:
        ok["content"] = {"application/json": {"example": example}}
    return {
        200: ok,
        202: {
            "description": "Still running; poll status_url",
            "model": Accepted,
            "content": {"application/json": {"example": ACCEPTED_EXAMPLE}},
        },
        **ERROR_RESPONSES,
        500: {
            "description": "Inference itself failed: the job's body (`id`, `status: failed`, "
            "`kind`) with its `error`",
            "model": ErrorResponse,
        },
    }


def inline_schema(model: type[BaseModel]) -> dict:
    """A model's JSON schema with its `$defs` inlined, for a hand-declared request body
    (`openapi_extra` is copied into the document as is: `#/$defs/...` would dangle there)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.rsplit("/", 1)[1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)


API_KEY_SCHEMES = {
    "ApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "One of DIGITS_API_KEYS (only when the service is configured with keys).",
    },
    "Bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <key>`, same keys.",
    },
}


def document_api_keys(app: FastAPI, routers: Iterable[APIRouter], guard: Callable) -> None:
    """Declare the API-key schemes ("Authorize" in /docs) on every operation of the `routers`
    that depend on `guard`, once, when the document is built: the guard reads the headers
    itself instead of taking FastAPI `Security` parameters, which are solved on every request."""
    guarded = [
        (route.path_format, method.lower())
        for router in routers
        if any(depends.dependency is guard for depends in router.dependencies)
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    ]
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()  # FastAPI caches it: this adds to the cached document, idempotently
        document.setdefault("components", {})["securitySchemes"] = API_KEY_SCHEMES
        for path, method in guarded:
            document["paths"][path][method]["security"] = [{name: []} for name in API_KEY_SCHEMES]
        return document

    app.openapi = openapi  # type: ignore[method-assign]
