"""The OpenAPI document is typed, and what the live service answers fits it."""

from __future__ import annotations

import base64

import jsonschema
import pytest

from common import registry
from tests.integration.conftest import png_bytes

pytestmark = pytest.mark.integration

MODEL = "mnist_cnn"


@pytest.fixture(scope="module")
def document(api_url) -> dict:
    import httpx

    return httpx.get(f"{api_url}/openapi.json", timeout=10).json()


def fits(document: dict, schema_name: str, body: object) -> None:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)


def test_every_operation_is_typed_and_errors_use_the_real_error_schema(document):
    components = document["components"]
    assert "HTTPValidationError" not in components["schemas"]  # FastAPI's 422 body: not ours
    schemes = components["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["ApiKey"]["description"],
    }
    assert schemes["Bearer"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            ok = next(s for s in responses if s.startswith("2"))
            schema = responses[ok]["content"]["application/json"]["schema"]
            assert schema.get("$ref"), f"{method} {path} {ok} is untyped"
            wanted = "V2Error" if path.startswith("/v2") else "ErrorResponse"
            for status, response in responses.items():
                if status[0] in "45" or status == "default":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith(wanted), f"{method} {path} {status}: {ref}"
            keyed = path.startswith(("/v1/predict", "/v1/jobs", "/v1/reviews", "/v1/models"))
            if keyed or path.startswith("/v2/models"):
                assert operation["security"] == [{"ApiKey": []}, {"Bearer": []}], path


def test_v1_models_comes_from_the_registry(client, document):
    response = client.get("/v1/models")
    assert response.status_code == 200, response.text
    fits(document, "ModelList", response.json())
    (model,) = response.json()["models"]
    aliases = registry.read_aliases("models", MODEL)
    served = aliases[registry.PRODUCTION]
    assert model["name"] == MODEL
    assert model["served_versions"] == [served]
    assert model["aliases"] == aliases
    assert [v["version"] for v in model["versions"]] == registry.versions("models", MODEL)
    assert [v["version"] for v in model["versions"] if v["served"]] == [served]
    metadata = registry.read_metadata("models", MODEL, served)
    assert model["input_contract"] == metadata["input_contract"]


def test_live_answers_fit_their_schemas(client, document, mnist_test):
    images, _ = mnist_test
    png = base64.b64encode(png_bytes(images[0])).decode()
    done = client.post("/v1/predict", json={"images": [png, [[0] * 28] * 28]})
    assert done.status_code == 200, done.text
    fits(document, "DigitsResult", done.json())
    fits(document, "JobView", client.get(f"/v1/jobs/{done.json()['id']}").json())
    queued = client.post("/v1/jobs", json={"images": [png]})
    fits(document, "Accepted", queued.json())
    for response in (
        client.get("/v1/jobs/nope"),
        client.post("/v1/predict?wait=9", json={"images": [png]}),  # FastAPI's own 422
        client.post("/v1/predict", content=b"x", headers={"Content-Type": "text/plain"}),
        client.post("/v1/reviews/nope", json={"label": 11}),
    ):
        assert response.status_code >= 400
        fits(document, "ErrorResponse", response.json())
    fits(document, "ReviewList", client.get("/v1/reviews?limit=5").json())
    fits(document, "Ready", client.get("/readyz").json())
    fits(document, "V2ModelMetadata", client.get(f"/v2/models/{MODEL}").json())
    fits(document, "V2Error", client.get("/v2/models/nope").json())
