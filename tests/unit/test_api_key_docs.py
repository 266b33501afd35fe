"""The OpenAPI document declares API keys exactly where `require_api_key` guards a route.

The guard reads the headers itself (no FastAPI `Security` parameters, which are solved per
request), so the document is told separately: this checks the two agree, route by route.
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.config import ApiSettings
from api.main import create_app


def _document() -> dict:
    app = create_app(ApiSettings(redis_url="redis://127.0.0.1:1/0"))
    app.openapi()
    return app.openapi()  # built twice: the second call must not add anything again


def test_every_guarded_operation_declares_both_schemes_and_no_other_does():
    document = _document()
    assert set(document["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    for path, operations in document["paths"].items():
        guarded = (path.startswith("/v1/") and path != "/v1/slo") or path.startswith("/v2/models")
        for method, operation in operations.items():
            expected = [{"ApiKey": []}, {"Bearer": []}] if guarded else None
            assert operation.get("security") == expected, f"{method} {path}"


def test_the_guard_still_refuses_a_missing_or_wrong_key_and_lets_a_right_one_through():
    app = create_app(ApiSettings(redis_url="redis://127.0.0.1:1/0", api_keys="k1"))
    # No lifespan (no Redis here): /v1/models needs only the settings the factory set.
    client = TestClient(app)
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"X-API-Key": "nope"}).status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer"}).status_code == 401
    assert client.get("/v1/models", headers={"X-API-Key": "k1"}).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": "Bearer k1"}).status_code == 200
