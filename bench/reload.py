"""`python -m bench.reload`: p99 while the production alias moves, against steady state.

One throw-away stack (bench.stack) serving copies of the committed versions 2 and 3 takes
sync `/v1/predict` traffic (one MNIST PNG per request) at `--rate` req/s, open loop. The run
is `--windows` pairs of `--window-s` windows, interleaved: a steady window, then a switch
window that starts by moving `production` (3 -> 2, next time back), so both kinds see the
same background load on a shared machine. Every worker process loads and warms the new
version in the background (workers/reload.py) and switches between batches. Reported: p50,
p99 and errors of each kind, and whether p99 during the switches stays within `--max-ratio`
(issue 14: 1.5x) of steady state with no failed request (exit status 1 otherwise).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop

from bench.http import Client
from bench.loadgen import Tally, open_loop
from bench.report import write_json
from bench.samples import mnist_pngs
from bench.stack import Stack, StackConfig
from common import registry

ROOT = Path(__file__).resolve().parent.parent
NAME = "mnist_cnn"


def copy_models(target: Path) -> Path:
    for version in ("2", "3"):
        source = ROOT / "models" / NAME / version
        (target / NAME / version).mkdir(parents=True)
        for file_name in ("model.onnx", "metadata.json"):
            shutil.copy(source / file_name, target / NAME / version / file_name)
    registry.write_aliases(target, NAME, {"production": 3})
    return target


async def measure(stack: Stack, models: Path, args: argparse.Namespace) -> dict[str, Any]:
    bodies = mnist_pngs(500)
    port = stack.port
    client = Client("127.0.0.1", port, 1000, 15.0)
    steady, switching = Tally(), Tally()
    served = 3
    try:
        # warm-up: connections, the API's batching, both processes' first batches
        await open_loop(client, "/v1/predict", bodies, "image/png", args.rate, 2.0)
        for _ in range(args.windows):
            await open_loop(
                client, "/v1/predict", bodies, "image/png", args.rate, args.window_s, tally=steady
            )
            served = 2 if served == 3 else 3
            registry.write_aliases(models, NAME, {"production": served})
            await open_loop(
                client,
                "/v1/predict",
                bodies,
                "image/png",
                args.rate,
                args.window_s,
                tally=switching,
            )
    finally:
        client.close()
    return {"steady": steady.summary(), "switching": switching.summary()}


def switches(log: Path) -> int:
    """`model switched` lines the worker processes logged (workers/reload.py)."""
    return log.read_text(errors="replace").count('"model switched"') if log.exists() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reload", description=__doc__)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--window-s", type=float, default=3.0)
    parser.add_argument("--windows", type=int, default=8, help="steady/switch window pairs")
    parser.add_argument("--max-ratio", type=float, default=1.5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as scratch:
        models = copy_models(Path(scratch))
        env = (("DIGITS_MODELS_DIR", str(models)), ("DIGITS_MODEL_RELOAD_INTERVAL_S", "0.2"))
        stack = Stack.start(StackConfig(api_workers=2, worker_concurrency=2, env=env))
        worker_log = stack._processes[0].log_path  # bench-worker: appended to across runs
        before = switches(worker_log)
        try:
            results = uvloop.run(measure(stack, models, args))
        finally:
            stack.stop()
        results["process_switches"] = switches(worker_log) - before
    steady, switching = results["steady"], results["switching"]
    ratio = switching["p99_ms"] / steady["p99_ms"] if steady["p99_ms"] else None
    errors = steady["errors"] + switching["errors"]
    # every move must have reached both pool processes, or the window measured nothing
    moved = results["process_switches"] == 2 * args.windows
    ok = moved and errors == 0 and ratio is not None and ratio <= args.max_ratio
    results |= {"rate": args.rate, "window_s": args.window_s, "windows": args.windows}
    results |= {"p99_ratio": ratio, "max_ratio": args.max_ratio, "passed": ok}
    print(f"{'':>10}  {'requests':>8}  {'errors':>6}  {'p50 ms':>7}  {'p99 ms':>7}  {'max ms':>7}")
    for kind in ("steady", "switching"):
        r = results[kind]
        print(
            f"{kind:>10}  {r['ok']:>8}  {r['errors']:>6}  {r['p50_ms']:>7.1f}  "
            f"{r['p99_ms']:>7.1f}  {r['max_ms']:>7.1f}"
        )
    print(
        f"p99 switching / steady = {ratio:.2f} (limit {args.max_ratio}); "
        f"{args.windows} alias moves, {results['process_switches']} process switches "
        f"(expected {2 * args.windows}); errors {errors}: {'PASS' if ok else 'FAIL'}"
    )
    print(f"results: {write_json(results, 'reload')}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
