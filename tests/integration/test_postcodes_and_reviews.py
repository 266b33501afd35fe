"""Postal codes end to end, and the human review round trip."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from harness.processes import wait_for_job, wait_until
from tests.integration.conftest import png_bytes

pytestmark = pytest.mark.integration


def postcode_png(digits: list[np.ndarray], gaps: list[int]) -> bytes:
    """Dark ink on light paper, digits left to right with uneven gaps (a JPEG-free scan)."""
    canvas = np.zeros((40, 24 + sum(28 + gap for gap in gaps)), np.uint8)
    x = 12
    for digit, gap in zip(digits, gaps, strict=True):
        canvas[6:34, x : x + 28] = np.maximum(canvas[6:34, x : x + 28], digit)
        x += 28 + gap
    buffer = io.BytesIO()
    Image.fromarray(255 - canvas).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def code(mnist_test, local_model):
    """Five test digits the model reads confidently, so the test checks the pipeline."""
    images, labels = mnist_test
    probabilities = local_model.predict(images[:200])
    confident = [i for i in range(200) if probabilities[i].max() > 0.999][:5]
    return [images[i] for i in confident], "".join(str(labels[i]) for i in confident)


def test_postcode_sync_reads_the_digits_in_order(client, code):
    digits, text = code
    response = client.post(
        "/v1/postcodes?length=5",
        content=postcode_png(digits, [4, 10, 2, 14, 6]),
        headers={"Content-Type": "image/png"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == text
    assert body["postcodes"][0]["text"] == text
    assert body["needs_review"] is False
    # read as a whole code: no directory configured on this worker
    assert body["decoding"] == "digits" and body["per_digit_text"] == text
    assert body["probability"] == body["confidence"] >= 0.9
    assert body["runner_up"]["text"] != text
    assert all(len(d["probabilities"]) == 10 for d in body["digits"])
    xs = [d["box"][0] for d in body["digits"]]
    assert xs == sorted(xs) and len(xs) == 5


def test_postcode_length_mismatch_needs_review(client, code):
    digits, _ = code
    response = client.post(
        "/v1/postcodes?length=6",
        content=postcode_png(digits, [6, 6, 6, 6, 6]),
        headers={"Content-Type": "image/png"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["needs_review"] is True
    # segmentation cut a digit in two to reach six: reported, and the cut digit's low
    # probability sinks the code's, or the count still differs
    assert body["doubtful_segmentation"] or "length_mismatch" in body["reasons"]
    assert {"low_confidence", "length_mismatch"} & set(body["reasons"])


def test_postcode_async_job(client, code):
    digits, text = code
    response = client.post(
        "/v1/jobs?kind=postcode",
        content=postcode_png(digits, [8, 8, 8, 8, 8]),
        headers={"Content-Type": "image/png"},
    )
    assert response.status_code == 202, response.text
    done = wait_for_job(client, response.json()["id"])
    assert done["status"] == "done"
    assert done["text"] == text and done["kind"] == "postcode"


def test_review_round_trip(client, redis_server, tmp_path):
    blank = png_bytes(np.full((28, 28), 255, np.uint8))  # white paper, no ink
    response = client.post("/v1/predict", content=blank, headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    job = response.json()
    (prediction,) = job["predictions"]
    assert prediction["needs_review"] and prediction["reason"] == "no_digit_found"
    assert prediction["digit"] is None

    review_id = f"{job['id']}-0"

    def listed():
        """Walk every page: other tests leave their own low-confidence items queued."""
        offset = 0
        while True:
            page = client.get("/v1/reviews", params={"offset": offset, "limit": 200}).json()
            found = next((item for item in page["items"] if item["id"] == review_id), None)
            if found or not page["items"]:
                return found
            offset += len(page["items"])

    item = wait_until(listed, 10, "the review item to be listed")
    assert item["job_id"] == job["id"] and item["reason"] == "no_digit_found"
    assert item["image_png"]

    resolved = client.post(f"/v1/reviews/{review_id}", json={"label": 7, "reviewer": "ana"})
    assert resolved.status_code == 200, resolved.text
    after = client.get(f"/v1/jobs/{job['id']}").json()
    assert after["status"] == "reviewed"
    assert after["predictions"][0]["reviewed_digit"] == 7
    assert after["predictions"][0]["digit"] is None  # the model's answer stays beside it
    assert listed() is None
    again = client.post(f"/v1/reviews/{review_id}", json={"label": 7})
    assert again.status_code == 404

    out = tmp_path / "reviewed.npz"
    export = [sys.executable, "-m", "training", "reviews", "export", "--out", str(out)]
    subprocess.run([*export, "--redis-url", redis_server.url], check=True, timeout=60)
    exported = np.load(out)
    row = list(exported["ids"]).index(review_id)
    assert exported["y"][row] == 7 and exported["model_digit"][row] == -1
    assert exported["x"][row].shape == (28, 28) and exported["x"][row].max() == 0


def test_review_label_must_be_a_digit(client):
    response = client.post("/v1/reviews/whatever-0", json={"label": 12})
    assert response.status_code == 422


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"label": None},
        {"verdict": "no_digit", "label": 3},
        {"verdict": "digit"},
        {"verdict": "maybe"},
        {"label": "none"},
    ],
)
def test_review_answer_must_be_a_digit_or_no_digit(client, answer):
    response = client.post("/v1/reviews/whatever-0", json=answer)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


def test_review_no_digit_answer_invents_no_label(client, redis_server, tmp_path):
    """A blank envelope is cleared with "no digit"; the export keeps it out of x/y."""
    blank = png_bytes(np.full((28, 28), 200, np.uint8))  # grey paper, no ink
    job = client.post("/v1/predict", content=blank, headers={"Content-Type": "image/png"}).json()
    assert job["predictions"][0]["reason"] == "no_digit_found"
    review_id = f"{job['id']}-0"
    wait_until(
        lambda: redis_server.client().zscore("digits:reviews:pending", review_id) is not None,
        10,
        "the review item to be queued",
    )
    # a labelled one too, so the export has both kinds
    other = client.post("/v1/predict", content=blank, headers={"Content-Type": "image/png"})
    other_id = f"{other.json()['id']}-0"
    wait_until(
        lambda: redis_server.client().zscore("digits:reviews:pending", other_id) is not None,
        10,
        "the second review item to be queued",
    )
    resolved = client.post(
        f"/v1/reviews/{review_id}", json={"label": None, "verdict": "no_digit", "reviewer": "ana"}
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["verdict"] == "no_digit" and resolved.json()["label"] is None
    assert client.post(f"/v1/reviews/{other_id}", json={"label": 4}).status_code == 200

    after = client.get(f"/v1/jobs/{job['id']}").json()
    assert after["status"] == "reviewed"
    prediction = after["predictions"][0]
    assert prediction["reviewed_digit"] is None and prediction["reviewed_verdict"] == "no_digit"
    assert prediction["digit"] is None
    assert client.post(f"/v1/reviews/{review_id}", json={"verdict": "no_digit"}).status_code == 404

    out = tmp_path / "reviewed.npz"
    export = [sys.executable, "-m", "training", "reviews", "export", "--out", str(out)]
    subprocess.run([*export, "--redis-url", redis_server.url], check=True, timeout=60)
    exported = np.load(out)
    assert review_id not in list(exported["ids"])
    assert len(exported["x"]) == len(exported["y"]) == len(exported["ids"])
    assert (exported["y"] >= 0).all() and (exported["y"] <= 9).all()
    row = list(exported["ids"]).index(other_id)
    assert exported["y"][row] == 4
    none_row = list(exported["no_digit_ids"]).index(review_id)
    assert exported["no_digit_x"][none_row].shape == (28, 28)
    assert exported["no_digit_model_digit"][none_row] == -1
    assert len(exported["no_digit_x"]) == len(exported["no_digit_ids"])
