"""End to end over real sockets: API process -> Redis -> worker processes -> the real model."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from common.contract import JobSpec, PredictMessage, encode_images, job_key
from common.queueing import make_celery
from harness.processes import wait_for_job
from tests.integration.conftest import png_bytes

pytestmark = pytest.mark.integration


def test_raw_png_body_is_read(client, mnist_test):
    images, labels = mnist_test
    response = client.post(
        "/v1/predict", content=png_bytes(images[0]), headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "done" and len(body["id"]) == 32
    assert body["model_version"]
    (prediction,) = body["predictions"]
    assert prediction["digit"] == labels[0]
    assert len(prediction["probabilities"]) == 10
    assert abs(sum(prediction["probabilities"]) - 1) < 1e-3
    assert prediction["confidence"] == max(prediction["probabilities"])


def test_multipart_parts_keep_their_order(client, mnist_test):
    images, labels = mnist_test
    files = [("file", (f"{i}.png", png_bytes(images[i]), "image/png")) for i in range(8)]
    response = client.post("/v1/predict", files=files)
    assert response.status_code == 200, response.text
    digits = [p["digit"] for p in response.json()["predictions"]]
    assert digits == labels[:8].tolist()


def test_json_base64_and_arrays_in_one_request(client, mnist_test, local_model):
    images, _ = mnist_test
    as_floats = (images[2] / 255.0).round(4).tolist()
    payload = {
        "images": [
            base64.b64encode(png_bytes(images[0])).decode(),
            images[1].tolist(),
            as_floats,
        ]
    }
    response = client.post("/v1/predict", json=payload)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    # Arrays are taken as they are (already MNIST-shaped): the answer equals the model's own.
    expected = local_model.predict(images[1:2])[0]
    assert predictions[1]["digit"] == int(expected.argmax())
    assert np.allclose(predictions[1]["probabilities"], expected, atol=1e-5)
    assert predictions[2]["digit"] == int(local_model.predict(images[2:3])[0].argmax())


def test_batch_of_256_in_one_sync_call_within_2s(client, mnist_test, local_model):
    images, _ = mnist_test
    batch = images[:256]
    started = time.monotonic()
    response = client.post("/v1/predict", json={"images": [image.tolist() for image in batch]})
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert elapsed < 2.0
    served = np.array([p["probabilities"] for p in response.json()["predictions"]])
    assert np.allclose(served, local_model.predict(batch), atol=1e-5)


def test_concurrent_requests_each_get_their_own_answer(client, mnist_test, local_model):
    """Requests coalesced into shared batches must not swap answers."""
    images, _ = mnist_test
    rng = np.random.default_rng(7)
    picks = rng.choice(len(images), size=96, replace=False)
    expected = local_model.predict(images[picks])

    def ask(index: int) -> list[float]:
        response = client.post("/v1/predict", json={"images": [images[index].tolist()]})
        assert response.status_code == 200, response.text
        return response.json()["predictions"][0]["probabilities"]

    with ThreadPoolExecutor(16) as pool:
        served = np.array(list(pool.map(ask, picks)))
    assert np.allclose(served, expected, atol=1e-5)


def test_submit_then_poll(client, mnist_test):
    images, labels = mnist_test
    response = client.post(
        "/v1/jobs", content=png_bytes(images[3]), headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert response.headers["Location"] == body["status_url"] == f"/v1/jobs/{body['id']}"
    done = wait_for_job(client, body["id"])
    assert done["status"] == "done"
    assert done["predictions"][0]["digit"] == labels[3]


def test_unknown_job_is_404(client):
    response = client.get("/v1/jobs/" + "0" * 32)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


def test_exception_inside_a_batch_fails_each_request_explicitly(redis_server, client):
    """A message whose image buffer does not match its jobs makes the batch raise."""
    specs = [JobSpec(f"{i:032x}") for i in range(1, 4)]
    store = redis_server.client()
    for spec in specs:
        store.hset(job_key(spec.id), mapping={"status": "queued", "kind": "digits", "n": 1})
    message = PredictMessage(specs, encode_images(np.zeros((2, 28, 28), np.uint8)), time.time())
    make_celery("test-sender", redis_server.url).send_task(
        "digits.predict", args=[message.to_dict()], queue="digits.interactive"
    )
    for spec in specs:
        body = wait_for_job(client, spec.id)
        assert body["status"] == "failed"
        assert body["error"]["code"] == "inference_failed"


def test_importing_the_api_loads_no_ml_runtime():
    code = (
        "import sys; from api.main import create_app; create_app();"
        "bad = {'tensorflow', 'keras', 'onnxruntime', 'workers'} & set(sys.modules);"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
