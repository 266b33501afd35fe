"""Images/s of Keras `predict`, a `tf.function` call and ONNX Runtime (1 and 2 threads).

Run when nothing else is busy: `python -m training.benchmark_runtimes [--version production]`.
Each cell is the best of a few timed rounds after warm-up, on real MNIST test images.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from common import registry
from training.data import load_mnist

BATCHES = (1, 32, 256)


def images_per_second(
    call: Callable[[np.ndarray], object], batch: np.ndarray, seconds: float
) -> float:
    """Best throughput of 3 rounds, each repeating `call` for about `seconds / 3`."""
    call(batch)  # warm-up: graph tracing, allocator
    best = 0.0
    for _ in range(3):
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds / 3:
            call(batch)
            calls += 1
        best = max(best, calls * len(batch) / elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=registry.default_models_dir())
    parser.add_argument("--name", default="mnist_cnn")
    parser.add_argument("--version", default=registry.PRODUCTION)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per cell")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import onnxruntime as ort
    import tensorflow as tf

    folder = registry.resolve(args.models_dir, args.name, args.version)
    images = (load_mnist().x_test[:256].astype(np.float32) / 255.0)[..., None]
    model = keras.saving.load_model(folder / "model.keras", compile=False)
    graph_call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    runners: dict[str, Callable[[np.ndarray], object]] = {
        "keras predict": lambda x: model.predict(x, batch_size=len(x), verbose=0),
        "tf.function": lambda x: graph_call(tf.constant(x)).numpy(),
    }
    for threads in (1, 2):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        name = session.get_inputs()[0].name
        runners[f"onnxruntime {threads} thr"] = lambda x, s=session, n=name: s.run(None, {n: x})

    print(f"model {folder}; images/s (best of 3), tf intra-op threads: default")
    print(f"{'runtime':<18}" + "".join(f"{'batch ' + str(b):>12}" for b in BATCHES))
    for label, call in runners.items():
        cells = [images_per_second(call, images[:b], args.seconds) for b in BATCHES]
        print(f"{label:<18}" + "".join(f"{c:>12,.0f}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
