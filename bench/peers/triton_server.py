"""The Triton peer's server: PyTriton serving the production ONNX model (issue 16).

Runs in the peer's own venv (`var/peers/triton-venv`, see `bench.peers.triton`), started by
`python -m bench.peers.triton`; not importable from the project's `.venv` (no pytriton there).

One KServe-v2 request carries one PNG as a `BYTES` tensor `image` of shape [1, 1] (binary
tensor extension). The bound callable does what the service does for one image: Pillow decode
+ the service's own normalisation (`common.imaging.prepare_digit`), then ONNX Runtime (one
intra-op thread per instance) and the version's temperature calibration. Triton's dynamic
batcher forms the batches: `max_batch_size` 128, `max_queue_delay` 2 ms, 3 instances.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from common import kernels
from common.contract import IMAGE_SIDE
from common.decoding import calibrate, temperature_from_metadata
from common.imaging import prepare_digit

MODEL_NAME = "mnist_cnn"


def _infer_func(model_dir: Path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name
    metadata_path = model_dir / "metadata.json"
    metadata = json.loads(metadata_path.read_text()) if metadata_path.exists() else {}
    temperature = temperature_from_metadata(metadata)

    @batch
    def infer(image: np.ndarray) -> dict[str, np.ndarray]:
        digits = [prepare_digit(bytes(row[0])) for row in image]
        pixels = np.stack([d.image for d in digits]).astype(np.float32) / 255.0
        pixels = pixels.reshape(-1, IMAGE_SIDE, IMAGE_SIDE, 1)
        probs = calibrate(session.run(None, {input_name: pixels})[0], temperature)
        digit = probs.argmax(axis=1).astype(np.int64)
        confidence = probs.max(axis=1).astype(np.float32)
        blank = np.array([d.blank for d in digits])
        digit[blank], confidence[blank] = -1, 0.0
        return {"digit": digit[:, None], "confidence": confidence[:, None]}

    return infer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.triton_server")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--max-batch-size", type=int, default=128)
    parser.add_argument("--max-queue-delay-us", type=int, default=2000)
    args = parser.parse_args()
    kernels.warm_up()  # as the API does at start: no request pays for a compilation
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=args.metrics_port,
        allow_metrics=False,
        exit_timeout_secs=5,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name=MODEL_NAME,
            infer_func=[_infer_func(args.model_dir) for _ in range(args.instances)],
            inputs=[Tensor(name="image", dtype=np.bytes_, shape=(1,))],
            outputs=[
                Tensor(name="digit", dtype=np.int64, shape=(1,)),
                Tensor(name="confidence", dtype=np.float32, shape=(1,)),
            ],
            config=ModelConfig(
                max_batch_size=args.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=args.max_queue_delay_us),
            ),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
