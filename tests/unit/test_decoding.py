"""`common.decoding`: temperature calibration, the postcode directory, code-level decoding."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from common.decoding import (
    CalibrationError,
    DirectoryError,
    PostcodeDirectory,
    calibrate,
    decode_code,
    temperature_from_metadata,
)


def one_hotish(digits: str, top: float = 0.9, second: dict[int, tuple[int, float]] | None = None):
    """(L, 10) rows: `top` on each digit, optionally a named second choice, rest spread."""
    rows = []
    for k, ch in enumerate(digits):
        row = np.zeros(10)
        row[int(ch)] = top
        if second and k in second:
            alt, p = second[k]
            row[alt] = p
        rest = 1.0 - row.sum()
        free = row == 0
        row[free] = rest / free.sum()
        rows.append(row)
    return np.array(rows, dtype=np.float32)


# --------------------------------------------------------------------------- calibration


def test_temperature_one_is_the_identity() -> None:
    p = np.random.default_rng(0).dirichlet(np.ones(10), size=8).astype(np.float32)
    assert calibrate(p, 1.0) is p


def test_calibration_matches_softmax_of_scaled_log_probabilities() -> None:
    p = np.random.default_rng(1).dirichlet(np.ones(10) * 0.2, size=16).astype(np.float32)
    for t in (0.5, 1.7, 4.0):
        out = calibrate(p, t)
        logits = np.log(np.clip(p.astype(np.float64), 1e-12, None)) / t
        expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        assert out.dtype == np.float32 and out.shape == p.shape
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
        assert (out.argmax(axis=1) == p.argmax(axis=1)).all()


def test_a_temperature_above_one_softens_and_below_one_sharpens() -> None:
    p = np.array([[0.97, 0.02, 0.01, 0, 0, 0, 0, 0, 0, 0]], np.float32)
    assert calibrate(p, 2.0).max() < 0.97 < calibrate(p, 0.5).max()


def test_zero_probabilities_do_not_make_nans() -> None:
    p = np.zeros((2, 10), np.float32)
    p[:, 3] = 1.0
    out = calibrate(p, 3.0)
    assert np.isfinite(out).all() and (out.argmax(axis=1) == 3).all()


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({}, 1.0),
        (None, 1.0),
        ({"calibration": None}, 1.0),
        ({"calibration": {"method": "temperature", "temperature": 1.8}}, 1.8),
        ({"calibration": {"method": "temperature", "temperature": 2}}, 2.0),
    ],
)
def test_temperature_from_metadata(metadata, expected) -> None:
    assert temperature_from_metadata(metadata) == expected


@pytest.mark.parametrize(
    "calibration",
    [
        {"method": "isotonic"},
        {"method": "temperature"},
        {"method": "temperature", "temperature": 0},
        {"method": "temperature", "temperature": -1.0},
        {"method": "temperature", "temperature": "2"},
        {"method": "temperature", "temperature": True},
        {"method": "temperature", "temperature": float("nan")},
        "temperature",
    ],
)
def test_bad_calibration_metadata_is_refused(calibration) -> None:
    with pytest.raises(CalibrationError):
        temperature_from_metadata({"calibration": calibration})


def test_the_worker_model_applies_the_temperature_in_its_metadata(tmp_path: Path) -> None:
    """DigitModel.predict = calibrate(predict_raw, T from metadata.json)."""
    pytest.importorskip("onnxruntime")
    from common.registry import resolve
    from workers.model import DigitModel, ModelRef

    source = resolve(Path("models"), "mnist_cnn", "production")
    folder = tmp_path / "mnist_cnn" / "7"
    folder.mkdir(parents=True)
    (folder / "model.onnx").symlink_to(source.resolve() / "model.onnx")
    images = np.random.default_rng(2).integers(0, 256, (6, 28, 28), dtype=np.uint8)

    plain = DigitModel(ModelRef("mnist_cnn", "7", folder))  # no metadata.json: T = 1
    assert plain.temperature == 1.0
    np.testing.assert_array_equal(plain.predict(images), plain.predict_raw(images))

    (folder / "metadata.json").write_text(
        json.dumps({"calibration": {"method": "temperature", "temperature": 2.5}})
    )
    hot = DigitModel(ModelRef("mnist_cnn", "7", folder))
    assert hot.temperature == 2.5
    raw = hot.predict_raw(images)
    np.testing.assert_allclose(hot.predict(images), calibrate(raw, 2.5), rtol=1e-6)

    (folder / "metadata.json").write_text(json.dumps({"calibration": {"method": "platt"}}))
    with pytest.raises(CalibrationError):
        DigitModel(ModelRef("mnist_cnn", "7", folder))


# --------------------------------------------------------------------------- directory


def test_directory_file_format(tmp_path: Path) -> None:
    path = tmp_path / "codes.txt"
    path.write_text("# US ZIP codes\n90210\n 10001 \n\n90210\n0501  # comment\n")
    directory = PostcodeDirectory.load(path)
    assert len(directory) == 3 and directory.lengths == (4, 5)
    assert directory.codes[5].shape == (2, 5) and directory.codes[5].dtype == np.uint8
    assert "90210" in directory and "0501" in directory and "90211" not in directory
    assert directory.columns[5].shape == (5, 2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no codes"),
        ("# nothing\n\n", "no codes"),
        ("90210\n9021O\n", "line 2"),
        ("90210\n90 210\n", "line 2"),
        ("12345-6789\n", "line 1"),
        ("1234567890123\n", "line 1"),
    ],
)
def test_bad_directory_files_are_refused_with_the_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "codes.txt"
    path.write_text(content)
    with pytest.raises(DirectoryError, match=message) as info:
        PostcodeDirectory.load(path)
    assert str(path) in str(info.value)


def test_missing_or_binary_directory_file(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match="no such file"):
        PostcodeDirectory.load(tmp_path / "absent.txt")
    (tmp_path / "bin").write_bytes(b"90210\n\xff\xfe\n")
    with pytest.raises(DirectoryError, match="not ASCII"):
        PostcodeDirectory.load(tmp_path / "bin")


# --------------------------------------------------------------------------- decoding


def test_without_directory_the_code_is_the_argmax_and_the_product() -> None:
    p = one_hotish("90210", top=0.9, second={3: (7, 0.08)})
    reading = decode_code(p)
    assert reading.decoding == "digits" and reading.text == "90210"
    assert reading.per_digit_text == "90210" and reading.length_in_directory is None
    assert math.isclose(reading.probability, float(np.prod(p.max(axis=1))), rel_tol=1e-6)
    # runner-up: the digit whose second choice is closest to its first, switched
    text, prob = reading.runner_up
    assert text == "90270"
    assert math.isclose(prob, reading.probability * 0.08 / 0.9, rel_tol=1e-5)


def test_directory_picks_the_most_likely_valid_code() -> None:
    # the per-digit reading 90270 is not a valid code; 90210 (2nd choice at position 3) is
    p = one_hotish("90270", top=0.6, second={3: (1, 0.35)})
    directory = PostcodeDirectory.from_codes(["90210", "10001", "90211", "33333"])
    reading = decode_code(p, directory)
    assert reading.decoding == "directory" and reading.text == "90210"
    assert reading.per_digit_text == "90270" and reading.length_in_directory is True
    # probability: the posterior restricted to the directory's codes of that length
    lp = np.log(np.clip(p.astype(np.float64), 1e-12, None))
    scores = {
        c: sum(lp[k, int(ch)] for k, ch in enumerate(c))
        for c in ("90210", "10001", "90211", "33333")
    }
    z = sum(math.exp(s) for s in scores.values())
    assert math.isclose(reading.probability, math.exp(scores["90210"]) / z, rel_tol=1e-6)
    runner_text, runner_prob = reading.runner_up
    assert runner_text == "90211"
    assert math.isclose(runner_prob, math.exp(scores["90211"]) / z, rel_tol=1e-6)
    assert reading.probability > runner_prob


def test_a_valid_argmax_is_kept_and_probabilities_sum_to_one() -> None:
    rng = np.random.default_rng(3)
    codes = [f"{i:05d}" for i in rng.choice(100_000, 5000, replace=False)]
    directory = PostcodeDirectory.from_codes(codes)
    target = codes[1234]
    p = one_hotish(target, top=0.7)
    reading = decode_code(p, directory)
    assert reading.text == target and reading.decoding == "directory"
    # the posterior over all directory codes of the length sums to one
    lp = np.log(p.astype(np.float64))
    all_scores = lp[np.arange(5), directory.codes[5]].sum(axis=1)
    posterior = np.exp(all_scores - all_scores.max())
    posterior /= posterior.sum()
    assert math.isclose(reading.probability, posterior.max(), rel_tol=1e-6)
    assert math.isclose(reading.runner_up[1], np.sort(posterior)[-2], rel_tol=1e-6)


def test_single_code_directory_has_no_runner_up() -> None:
    reading = decode_code(one_hotish("12345"), PostcodeDirectory.from_codes(["55555"]))
    assert reading.text == "55555" and reading.probability == 1.0 and reading.runner_up is None


def test_a_length_not_in_the_directory_falls_back_to_digits() -> None:
    directory = PostcodeDirectory.from_codes(["90210", "10001"])
    reading = decode_code(one_hotish("9021"), directory)
    assert reading.decoding == "digits" and reading.text == "9021"
    assert reading.length_in_directory is False


def test_full_size_directory_vectorised() -> None:
    """42,000 five-digit codes (the US ZIP list's size): decoded as arrays, not a loop."""
    rng = np.random.default_rng(4)
    codes = [f"{i:05d}" for i in rng.choice(100_000, 42_000, replace=False)]
    directory = PostcodeDirectory.from_codes(codes)
    for target in (codes[0], codes[-1], codes[20_000]):
        p = one_hotish(target, top=0.5)
        assert decode_code(p, directory).text == target
