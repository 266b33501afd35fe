"""Open Inference Protocol v2 with the real `tritonclient[http]` against the real stack.

Every answer is checked against the production model run in this process (numeric tensors)
or against `/v1/predict` on the same images (encoded images: the same normalisation).
"""

from __future__ import annotations

import base64
import signal
import time
from urllib.parse import urlparse

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from common import registry
from tests.integration.conftest import png_bytes

pytestmark = pytest.mark.integration

MODEL = "mnist_cnn"
OUTPUT_NAMES = ("digit", "confidence", "probabilities", "needs_review")


@pytest.fixture()
def triton_client(api_url: str):
    client = triton.InferenceServerClient(urlparse(api_url).netloc, network_timeout=15)
    yield client
    client.close()


def served_version() -> str:
    return str(registry.read_aliases("models", MODEL)[registry.PRODUCTION])


def infer(client, images: np.ndarray, datatype: str, *, binary: bool, version: str = ""):
    tensor = triton.InferInput("image", list(images.shape), datatype)
    tensor.set_data_from_numpy(images, binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in OUTPUT_NAMES]
    return client.infer(MODEL, [tensor], model_version=version, outputs=outputs, request_id="r1")


def test_health_and_metadata_come_from_the_registry(triton_client):
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    server = triton_client.get_server_metadata()
    assert "binary_tensor_data" in server["extensions"]
    version = served_version()
    metadata = triton_client.get_model_metadata(MODEL)
    assert metadata["name"] == MODEL and metadata["versions"] == [version]
    assert metadata["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 28, 28]}]
    assert [o["name"] for o in metadata["outputs"]] == list(OUTPUT_NAMES)
    assert triton_client.get_model_metadata(MODEL, version)["versions"] == [version]
    assert triton_client.is_model_ready(MODEL)
    assert triton_client.is_model_ready(MODEL, version)
    others = [str(v) for v in registry.versions("models", MODEL) if str(v) != version]
    for other in others:  # published, not served: metadata yes, ready no
        assert triton_client.get_model_metadata(MODEL, other)["versions"] == [other]
        assert not triton_client.is_model_ready(MODEL, other)
    assert not triton_client.is_model_ready("no_such_model")
    with pytest.raises(InferenceServerException, match="unknown model"):
        triton_client.get_model_metadata("no_such_model")


@pytest.mark.parametrize(("binary", "trailing_one"), [(True, False), (False, True)])
def test_uint8_tensors_are_answered_by_the_production_model(
    triton_client, mnist_test, local_model, binary, trailing_one
):
    images, labels = mnist_test
    batch = images[:40]
    sent = batch[..., None] if trailing_one else batch
    result = infer(triton_client, np.ascontiguousarray(sent), "UINT8", binary=binary)
    expected = local_model.predict(batch)
    assert result.get_response()["model_version"] == served_version()
    assert result.get_response()["id"] == "r1"
    digits = result.as_numpy("digit")
    assert digits.dtype == np.int64 and digits.shape == (40,)
    assert (digits == expected.argmax(axis=1)).all()
    assert (digits == labels[:40]).mean() >= 0.95
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (40, 10)
    np.testing.assert_allclose(probabilities, expected, atol=2e-6)
    np.testing.assert_allclose(result.as_numpy("confidence"), expected.max(axis=1), atol=2e-6)
    review = result.as_numpy("needs_review")
    assert review.dtype == np.bool_ and review.shape == (40,)


def test_fp32_tensors_in_unit_range_equal_their_uint8_form(triton_client, mnist_test):
    images, _ = mnist_test
    batch = images[40:48]
    as_float = (batch.astype(np.float32) / 255.0)[..., None]
    by_float = infer(triton_client, as_float, "FP32", binary=True)
    by_uint8 = infer(triton_client, batch, "UINT8", binary=True)
    for name in OUTPUT_NAMES:
        np.testing.assert_array_equal(by_float.as_numpy(name), by_uint8.as_numpy(name))


def test_encoded_images_are_normalised_like_v1(triton_client, client, mnist_test):
    images, _ = mnist_test
    pngs = [png_bytes(image) for image in images[60:66]]
    v1 = client.post("/v1/predict", json={"images": [base64.b64encode(p).decode() for p in pngs]})
    assert v1.status_code == 200, v1.text
    v1_answers = v1.json()["predictions"]
    tensor = np.array(pngs, dtype=np.object_)
    for binary in (True, False):
        if not binary:  # JSON BYTES elements: base64 text (PNG bytes are not UTF-8)
            tensor = np.array([base64.b64encode(p) for p in pngs], dtype=np.object_)
        result = infer(triton_client, tensor, "BYTES", binary=binary)
        assert result.as_numpy("digit").tolist() == [a["digit"] for a in v1_answers]
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), [a["probabilities"] for a in v1_answers], atol=2e-6
        )


def test_blank_images_are_not_guessed(triton_client):
    result = infer(triton_client, np.zeros((2, 28, 28), np.uint8), "UINT8", binary=True)
    assert result.as_numpy("digit").tolist() == [-1, -1]
    assert result.as_numpy("needs_review").tolist() == [True, True]
    assert not result.as_numpy("probabilities").any()


def test_versioned_infer_serves_only_the_served_version(triton_client, mnist_test):
    images, _ = mnist_test
    version = served_version()
    result = infer(triton_client, images[:3], "UINT8", binary=True, version=version)
    assert result.get_response()["model_version"] == version
    for other in (str(v) for v in registry.versions("models", MODEL) if str(v) != version):
        with pytest.raises(InferenceServerException, match="not served"):
            infer(triton_client, images[:3], "UINT8", binary=True, version=other)
    with pytest.raises(InferenceServerException, match="no version"):
        infer(triton_client, images[:3], "UINT8", binary=True, version="999")


def _one(datatype: str, shape: list[int], data: list) -> bytes:
    return orjson.dumps(
        {"inputs": [{"name": "image", "datatype": datatype, "shape": shape, "data": data}]}
    )


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{broken", 400, "not valid JSON"),
        (b'{"inputs": []}', 400, "exactly one input"),
        (_one("INT8", [1, 28, 28], []), 400, "not accepted"),
        (_one("UINT8", [1, 28, 27], []), 400, "shape"),
        (_one("UINT8", [1, 28, 28], [1]), 400, "needs 784"),
        (_one("UINT8", [1, 28, 28], [300] * 784), 422, "within 0..255"),
        (_one("FP32", [1, 28, 28], [2.0] * 784), 422, "within 0..1"),
        (_one("BYTES", [1], ["%%%"]), 400, "not valid base64"),
        (_one("UINT8", [300, 28, 28], []), 413, "300 images"),
    ],
)
def test_errors_are_the_protocol_error_json(client, body, status, says):
    response = client.post(
        f"/v2/models/{MODEL}/infer", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"error"} and isinstance(error["error"], str)
    assert says in error["error"]


def test_binary_extension_checks_its_lengths(client):
    header = b'{"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 28, 28], '
    header += b'"parameters": {"binary_data_size": 784}}]}'
    response = client.post(
        f"/v2/models/{MODEL}/infer",
        content=header + bytes(783),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 400
    assert "does not match" in response.json()["error"]


def test_unknown_v2_route_is_a_protocol_error(client):
    response = client.get("/v2/nothing-here")
    assert response.status_code == 404 and isinstance(response.json()["error"], str)


def test_past_the_deadline_is_an_error_never_a_late_answer(api_url, worker, mnist_test):
    images, _ = mnist_test
    client = triton.InferenceServerClient(urlparse(api_url).netloc, network_timeout=15)
    worker.signal(signal.SIGSTOP)  # alive, but nothing gets done
    try:
        started = time.monotonic()
        with pytest.raises(InferenceServerException) as raised:
            infer(client, images[:2], "UINT8", binary=True)
        elapsed = time.monotonic() - started
    finally:
        worker.signal(signal.SIGCONT)
        client.close()
    assert raised.value.status() == "504"
    assert "no answer within 2 s" in raised.value.message()
    assert 2.0 <= elapsed < 2.5


def test_api_key_is_required_on_v2_models_when_configured(redis_server, worker):
    from harness.processes import free_port, start_api

    port = free_port()
    api = start_api(redis_server.url, port, name="v2-keyed-api", DIGITS_API_KEYS="k1")
    try:
        url = f"127.0.0.1:{port}"
        client = triton.InferenceServerClient(url, network_timeout=15)
        assert client.is_server_live()  # health needs no key
        with pytest.raises(InferenceServerException, match="API key"):
            client.get_model_metadata(MODEL)
        assert client.get_model_metadata(MODEL, headers={"X-API-Key": "k1"})["name"] == MODEL
        client.close()
        denied = httpx.post(f"http://{url}/v2/models/{MODEL}/infer", content=b"{}")
        assert denied.status_code == 401 and isinstance(denied.json()["error"], str)
    finally:
        api.stop()
