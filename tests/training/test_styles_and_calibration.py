"""Synthetic training styles, the font split, temperature scaling and the robustness sets."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from common.decoding import calibrate
from evaluation import robust
from training import fonts, synthetic
from training.calibration import expected_calibration_error, fit_temperature


def test_training_and_heldout_fonts_are_disjoint() -> None:
    train = {f for files in fonts.TRAIN_FONTS.values() for f in files}
    heldout = {f for files in fonts.HELDOUT_FONTS.values() for f in files}
    assert train and heldout and not train & heldout
    assert fonts.missing_packages() == [], "run scripts/ensure-tools.sh fonts"


def test_missing_font_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(fonts.FontsMissing, match="fonts-nowhere"):
        fonts.font_paths({"fonts-nowhere": ("NoSuchFont.ttf",)})


def test_synthetic_styles_are_seeded_and_normalised() -> None:
    yy, xx = np.mgrid[0:28, 0:28]
    ring = (np.abs(np.hypot(yy - 14, (xx - 14) * 1.4) - 8) < 2).astype(np.uint8) * 255
    digits = np.repeat(ring[None], 30, axis=0)  # a zero, as MNIST frames it
    labels = np.arange(30) % 10
    config = synthetic.SyntheticConfig(mnist_scans=20, font_digits=20, seed=5)
    x1, y1 = synthetic.build(config, digits, labels, workers=1)
    x2, y2 = synthetic.build(config, digits, labels, workers=1)
    assert x1.shape == (40, 28, 28) and x1.dtype == np.uint8
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert list(y1[20:30]) == list(range(10))  # font digits cycle through the classes
    assert (x1.reshape(40, -1).max(axis=1) == 255).all()  # normalised: strokes peak at 255


def test_temperature_recovers_overconfidence() -> None:
    rng = np.random.default_rng(1)
    n, true_t = 4000, 2.0
    logits = rng.normal(0, 3, (n, 10))
    calibrated = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(10, p=p) for p in calibrated])
    sharp = calibrate(calibrated, 1 / true_t)  # the same beliefs, overconfident
    t = fit_temperature(sharp, labels)
    assert t == pytest.approx(true_t, rel=0.15)
    fixed = calibrate(sharp, t)
    assert expected_calibration_error(fixed, labels) < expected_calibration_error(sharp, labels)


def test_robustness_sets_are_deterministic_and_labelled(tmp_path: Path) -> None:
    a = robust.generate(tmp_path / "a", "dev", 12, 3)
    robust.generate(tmp_path / "b", "dev", 12, 3)
    assert a["counts"] == {"fonts": 12, "lowres": 12, "codes": 3, "lowres_codes": 3}
    assert set(a["fonts"]) == {f for files in fonts.HELDOUT_FONTS.values() for f in files}
    with open(tmp_path / "a" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        assert (tmp_path / "a" / row["file"]).read_bytes() == (
            tmp_path / "b" / row["file"]
        ).read_bytes()
        length = robust.CODE_LENGTH if row["set"] in robust.CODE_SETS else 1
        assert len(row["label"]) == length and row["label"].isdigit()


def test_directory_codes_come_from_the_directory(tmp_path: Path) -> None:
    directory = tmp_path / "codes.txt"
    directory.write_text("12345\n67890\nnot-a-code\n1234\n")
    robust.generate(tmp_path / "sets", "test", 1, 6, directory=directory)
    with open(tmp_path / "sets" / "labels.csv", newline="") as fh:
        labels = {r["label"] for r in csv.DictReader(fh) if r["set"] == "directory_codes"}
    assert labels and labels <= {"12345", "67890"}
