"""OpenAPI descriptions of bodies the routes read by hand (raw images, multipart, JSON)."""

from __future__ import annotations

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
    content = {
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


def _error(description: str, code: str, message: str) -> dict:
    example = {"error": {"code": code, "message": message, "index": 0}}
    return {"description": description, "content": {"application/json": {"example": example}}}


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

ERROR_RESPONSES = {
    400: _error("Malformed body", "undecodable", "image could not be decoded"),
    401: _error("Missing or wrong API key (when API_KEYS is set)", "unauthorized", "..."),
    413: _error("Too many images or too large a body/image", "too_many_images", "..."),
    415: _error("Unsupported content type or image format", "unsupported_format", "..."),
    422: _error("Invalid image or parameters", "bad_array", "..."),
    503: _error("Queue or workers unavailable; see Retry-After", "queue_unavailable", "..."),
}


def prediction_responses() -> dict:
    return {
        200: {
            "description": "Done within the wait",
            "content": {"application/json": {"example": PREDICTION_EXAMPLE}},
        },
        202: {
            "description": "Still running; poll status_url",
            "content": {"application/json": {"example": ACCEPTED_EXAMPLE}},
        },
        **ERROR_RESPONSES,
    }
