"""The documented real directory: US ZIP codes from the PyPI package `zipcodes`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from common.decoding import PostcodeDirectory, decode_code

pytest.importorskip("zipcodes")
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "us_zip_directory.py"


def load_script():
    spec = importlib.util.spec_from_file_location("us_zip_directory", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_zip_list_is_a_valid_directory(tmp_path: Path) -> None:
    out = tmp_path / "us-zip.txt"
    assert load_script().main(["--out", str(out)]) == 0
    directory = PostcodeDirectory.load(out)
    assert directory.lengths == (5,) and 40_000 < len(directory) < 50_000
    assert "90210" in directory and "00501" in directory and "00000" not in directory
    # a confident reading of a real ZIP code is that code
    p = np.full((5, 10), 0.02, np.float32)
    for k, ch in enumerate("90210"):
        p[k, int(ch)] = 0.82
    reading = decode_code(p, directory)
    assert reading.text == "90210" and reading.decoding == "directory"
