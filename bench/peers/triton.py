"""`python -m bench.peers.triton`: Triton (PyTriton) and this service side by side (issue 16).

Same model (the registry's production ONNX version), same minimal preprocessing (Pillow decode
+ `common.imaging.prepare_digit`, then ONNX Runtime), same load: one PNG per request from the
project's own load generator (`bench.loadgen`, closed loop at N keep-alive connections, like
wrk), on loopback, one server at a time on the same machine. Triton gets KServe-v2 requests
with the PNG as a `BYTES` tensor (binary tensor extension); this service gets `POST
/v1/predict` with the PNG as the body, on a throw-away stack (`bench.stack`, as `make bench`).

PyTriton lives in its own venv, `var/peers/triton-venv`, created on first use with pinned
versions (never the project's `.venv`: PyTriton pins numpy < 2). Its `triton_python_backend_stub`
links the system `libpython3.11.so.1.0`, which does not match the venv's Python (pyenv 3.11.7
here) and fails with `_thread.RLock ... _recursion_count`; the server is started with
`LD_LIBRARY_PATH` = that Python's own `LIBDIR`, which fixes it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench import report
from bench.runner import ROOT, median_of, run_load
from bench.samples import drawn_pngs, mnist_pngs
from bench.stack import Stack, StackConfig
from common.registry import PRODUCTION, resolve
from harness.processes import free_port

VENV = ROOT / "var" / "peers" / "triton-venv"
PINS = (
    "nvidia-pytriton==0.7.0",
    "onnxruntime==1.32.0",
    "pillow==13.0.0",
    "numpy==1.26.4",
    "numba==0.68.1",  # common.imaging's kernels: the peer normalises with the same code
)
MODEL = "mnist_cnn"
LOG = ROOT / "var" / "peers" / "triton.log"


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def ensure_venv() -> Path:
    """The peer's python, installing the venv (pinned) on first use or when PINS change."""
    python, stamp = VENV / "bin" / "python", VENV / "pins.txt"
    wanted = "\n".join(PINS) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    _progress(f"installing {', '.join(PINS)} into {VENV} (first use)")
    base = Path(sys.base_prefix) / "bin" / "python3"
    subprocess.run([str(base), "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS], check=True)
    stamp.write_text(wanted)
    return python


def _libdir(python: Path) -> str:
    code = "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True).stdout.strip()


class TritonPeer:
    """The PyTriton server (`bench.peers.triton_server`) in its own process group."""

    def __init__(self, python: Path, model_dir: Path, instances: int, delay_us: int) -> None:
        self.port = free_port()
        # Its own kernel cache: compiled against the peer's numpy, not the service's.
        env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_CACHE_DIR=str(VENV.parent / "numba"))
        # NOTE: the fix for the backend stub loading the system libpython (module docstring).
        env["LD_LIBRARY_PATH"] = ":".join(
            filter(None, (_libdir(python), os.environ.get("LD_LIBRARY_PATH")))
        )
        LOG.parent.mkdir(parents=True, exist_ok=True)
        command = [str(python), "-m", "bench.peers.triton_server", "--model-dir", str(model_dir)]
        command += ["--http-port", str(self.port), "--grpc-port", str(free_port())]
        command += ["--metrics-port", str(free_port()), "--instances", str(instances)]
        command += ["--max-queue-delay-us", str(delay_us)]
        with LOG.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        self.infer_path = f"/v2/models/{MODEL}/infer"

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = LOG.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"Triton exited ({self.process.returncode}):\n{tail}")
            try:
                if httpx.get(f"{self.url}/v2/models/{MODEL}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"Triton not ready after {timeout} s; see {LOG}")

    def stop(self) -> None:
        """SIGINT to the group (PyTriton unloads and exits), SIGKILL if it has not in 30 s."""
        if self.process.poll() is not None:
            return
        pgid = self.process.pid  # its own session: the group id is its pid
        os.killpg(pgid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.process.wait(timeout=10)


def kserve_body(png: bytes) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """One PNG as a KServe-v2 BYTES tensor [1, 1], binary tensor extension; JSON outputs."""
    size = len(png) + 4  # BYTES elements are 4-byte little-endian length-prefixed
    tensor = {"name": "image", "shape": [1, 1], "datatype": "BYTES"}
    tensor["parameters"] = {"binary_data_size": size}
    header = json.dumps({"inputs": [tensor]}, separators=(",", ":")).encode()
    body = header + struct.pack("<I", len(png)) + png
    return body, (("Inference-Header-Content-Length", str(len(header))),)


def _ladder(name, url, path, bodies, content_type, pids, args) -> list[dict[str, Any]]:
    spec = {"mode": "connections", "url": url, "path": path, "bodies": bodies}
    spec["content_type"] = content_type
    # NOTE: warm-up (connections, pools, first batches), not measured.
    run_load(spec | {"connections": max(args.connections), "duration": 2.0}, pids)
    steps = []
    for connections in args.connections:
        step = spec | {"connections": connections, "duration": args.seconds}
        runs = [run_load(step, pids) for _ in range(args.repeats)]
        steps.append(median_of(runs) | {"runs": runs})
        r = steps[-1]
        _progress(
            f"  {name} c{connections}: {r['achieved_rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, "
            f"p99 {r['p99_ms']:.1f} ms, {r['errors']:g} errors, cpu {r['cpu']}"
        )
    return steps


def run_triton(args: argparse.Namespace, pngs: list[bytes]) -> dict[str, Any]:
    python = ensure_venv()
    model_dir = resolve(ROOT / "models", MODEL, PRODUCTION)
    _progress(f"starting Triton (PyTriton) on {model_dir}")
    peer = TritonPeer(python, model_dir, args.instances, args.max_queue_delay_us)
    try:
        peer.wait_ready()
        bodies = [kserve_body(png) for png in pngs]
        pids = {"triton": peer.process.pid}
        steps = _ladder(
            "triton", peer.url, peer.infer_path, bodies, "application/octet-stream", pids, args
        )
    finally:
        peer.stop()
    return {"model": str(model_dir.relative_to(ROOT)), "steps": steps}


def run_service(args: argparse.Namespace, pngs: list[bytes]) -> dict[str, Any]:
    config = StackConfig(args.api_workers, args.worker_concurrency, args.batch_delay_ms)
    _progress(f"starting this service ({config.label()})")
    stack = Stack.start(config)
    try:
        bodies = [(png, ()) for png in pngs]
        steps = _ladder("service", stack.url, "/v1/predict", bodies, "image/png", stack.pids, args)
    finally:
        stack.stop()
    return {"config": config.__dict__, "steps": steps}


def _cell(step: dict[str, Any] | None) -> tuple[str, ...]:
    if step is None:
        return ("-",) * 5
    cpu = sum(v for k, v in step["cpu"].items() if k != "loadgen" and v is not None)
    return (
        f"{step['achieved_rps']:,.0f}",
        report._ms(step["p50_ms"]),
        report._ms(step["p99_ms"]),
        f"{step['errors']:g}",
        f"{cpu:.2f}",
    )


_MEASURES = ("req/s", "p50 ms", "p99 ms", "err", "CPU")
COLUMNS = ("conns", *(f"{who} {what}" for who in ("Triton", "service") for what in _MEASURES))


def table(results: dict[str, Any], markdown: bool = False) -> str:
    triton = {s["connections"]: s for s in results.get("triton", {}).get("steps", [])}
    service = {s["connections"]: s for s in results.get("service", {}).get("steps", [])}
    rows = [
        (str(c), *_cell(triton.get(c)), *_cell(service.get(c)))
        for c in sorted(set(triton) | set(service))
    ]
    return (report.markdown if markdown else report.table)(rows, COLUMNS)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.triton", description=__doc__)
    parser.add_argument("--connections", default="16,64,256", help="closed-loop connection counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="per step")
    parser.add_argument("--repeats", type=int, default=1, help="medians over repeats")
    parser.add_argument("--only", choices=("triton", "service"), help="run one side only")
    parser.add_argument(
        "--sample",
        choices=("mnist", "drawn"),
        default="mnist",
        help="MNIST test digits (framed: the normalisation's pass-through) or drawn off-centre "
        "digits (its full path, as real mail)",
    )
    parser.add_argument("--instances", type=int, default=3, help="Triton model instances")
    parser.add_argument("--max-queue-delay-us", type=int, default=2000)
    parser.add_argument("--api-workers", type=int, default=StackConfig.api_workers)
    parser.add_argument("--worker-concurrency", type=int, default=StackConfig.worker_concurrency)
    parser.add_argument("--batch-delay-ms", type=float, default=StackConfig.batch_delay_ms)
    args = parser.parse_args(argv)
    args.connections = [int(c) for c in args.connections.split(",")]
    return args


def _sample(kind: str) -> tuple[list[bytes], str]:
    """The 100 PNGs both sides get, and what they are (printed and in the JSON)."""
    if kind == "mnist":
        try:
            return mnist_pngs(100, fallback=False), "100 MNIST test digits (pass-through)"
        except Exception as exc:  # no MNIST here: say so rather than measure something else
            _progress(f"MNIST not available ({exc}); sending drawn digits instead")
    return drawn_pngs(100), "100 drawn off-centre digits (full normalisation)"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    pngs, sample = _sample(args.sample)
    _progress(f"sample: {sample}")
    started = time.monotonic()
    results: dict[str, Any] = {
        "sample": sample,
        "machine": report.machine(),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "args": {k: v for k, v in vars(args).items()},
    }
    # NOTE: one server at a time, Triton first, so neither shares the cores with the other.
    if args.only in (None, "triton"):
        results["triton"] = run_triton(args, pngs)
    if args.only in (None, "service"):
        results["service"] = run_service(args, pngs)
    results["table"] = table(results)
    results["markdown"] = table(results, markdown=True)
    results["wall_s"] = round(time.monotonic() - started, 1)
    path = report.write_json(results, "peers-triton")
    print(results["table"])
    print(
        f"\nCPU = cores used by the server's process tree (Triton: tritonserver + stubs + the "
        f"PyTriton process; service: API + workers + Redis), load generator excluded.\n"
        f"sample: {sample}; machine: {results['machine']}; started {results['started_at']}; "
        f"took {results['wall_s']} s; JSON: {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
