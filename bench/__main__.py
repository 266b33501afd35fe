"""`python -m bench`: start a throw-away stack (or use `--url`), load it, print one table.

Sections (issue #8): 1 raw model limit, 2 single-image sync ladder (open loop), 3 batch sync,
4 burst of jobs with sync probes, 5 640x480 JPEG photos. Medians over repeats; results as
JSON in bench/results/. `--matrix` instead compares service configurations side by side.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import profiling, report
from bench.modelbench import model_limit
from bench.plan import MATRIX_LADDER, PLANS, Plan
from bench.runner import median_of, run_load
from bench.samples import batch_json, binary_infer, mnist_pngs, photo_jpeg
from bench.stack import Stack, StackConfig


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="one repeat, 3 s steps (~2 min)")
    mode.add_argument("--smoke", action="store_true", help="tiny rates, seconds (for tests)")
    parser.add_argument("--url", help="benchmark a running API instead of starting a stack")
    parser.add_argument("--repeats", type=int, help="override the plan's repeats")
    parser.add_argument("--ladder", help="override the sync ladder, e.g. 100,250,500")
    parser.add_argument("--api-workers", type=int, default=StackConfig.api_workers)
    parser.add_argument("--worker-concurrency", type=int, default=StackConfig.worker_concurrency)
    parser.add_argument("--batch-delay-ms", type=float, default=StackConfig.batch_delay_ms)
    parser.add_argument("--profile", action="store_true", help="py-spy the API and workers")
    parser.add_argument("--profile-rate", type=int, default=1000, help="req/s while profiling")
    parser.add_argument("--matrix", action="store_true", help="compare configurations instead")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: model,...")
    parser.add_argument("--out", help="JSON file name prefix (default: the plan name)")
    return parser.parse_args(argv)


def _measured(spec: dict[str, Any], stack: Stack) -> dict[str, Any]:
    """One load step plus how many Celery messages carried it (batching at work)."""
    before = stack.celery_messages()
    result = run_load(spec, stack.pids)
    if before is not None:
        messages = stack.celery_messages() - before
        result["celery_messages"] = messages
        if spec["mode"] == "rate" and messages:
            result["requests_per_message"] = round(result["sent"] / messages, 2)
    return result


def _repeat(plan: Plan, spec: dict[str, Any], stack: Stack) -> dict[str, Any]:
    runs = [_measured(spec, stack) for _ in range(plan.repeats)]
    merged = median_of(runs)
    merged["runs"] = runs
    return merged


def _warm_up(stack: Stack, pngs: list[bytes], batch: bytes, rate: float) -> None:
    """First requests pay for connections, pools and lazy imports; they are not measured.

    NOTE: a cold API hit at once by hundreds of req/s collapsed in trials (the step after
    start-up answered far less than later, harder steps), so the warm-up ends open loop.
    """
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        for png in pngs[:20]:
            client.post("/v1/predict", content=png, headers={"Content-Type": "image/png"})
        client.post("/v1/predict", content=batch, headers={"Content-Type": "application/json"})
    spec = {"mode": "rate", "url": stack.url, "bodies": pngs, "content_type": "image/png"}
    run_load(spec | {"rate": rate, "duration": 2.0}, stack.pids)


def _sync_ladder(plan, stack, bodies, content_type, rates) -> list[dict[str, Any]]:
    steps = []
    for rate in rates:
        spec = {"mode": "rate", "url": stack.url, "bodies": bodies, "content_type": content_type}
        spec |= {"rate": rate, "duration": plan.step_s}
        steps.append(_repeat(plan, spec, stack))
        _progress(f"  {content_type} {rate} req/s: {_brief(steps[-1])}")
    return steps


def _brief(step: dict[str, Any]) -> str:
    p99 = step["p99_ms"]
    return (
        f"{step['achieved_rps']:.0f} req/s, p99 {p99 if p99 is None else round(p99, 1)} ms, "
        f"{step['errors']:g} errors, {step['accepted_202']:g} x 202, cpu {step['cpu']}, "
        f"requests/message {step.get('requests_per_message')}"
    )


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _batch_spec(plan: Plan, stack: Stack, batch: bytes) -> dict[str, Any]:
    return {
        "mode": "batch",
        "url": stack.url,
        "body": batch,
        "images_per_request": plan.batch_images,
        "concurrency": plan.batch_concurrency,
        "duration": plan.step_s,
    }


def _profile(stack: Stack, pngs: list[bytes], rate: int, seconds: float) -> dict[str, Any]:
    """py-spy the API and the workers while sync load runs at `rate` (not a measured run)."""
    out_dir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    recorders = {
        name: profiling.start(stack.pids[name], seconds, out_dir / f"{name}.txt", gil=gil)
        for name, gil in (("api", True), ("workers", False))
    }
    if any(recorder is None for recorder in recorders.values()):
        return {"error": "py-spy not installed (pip install py-spy)"}
    time.sleep(1.0)  # py-spy attaches to every process of the tree before sampling
    spec = {"mode": "rate", "url": stack.url, "bodies": pngs, "content_type": "image/png"}
    load = run_load(spec | {"rate": rate, "duration": seconds}, stack.pids)
    summary: dict[str, Any] = {"rate": rate, "seconds": seconds, "load": _brief(load)}
    for name, recorder in recorders.items():
        recorder.wait(timeout=seconds + 60)
        path = out_dir / f"{name}.txt"
        categories = profiling.API_CATEGORIES if name == "api" else profiling.WORKER_CATEGORIES
        summary[name] = (
            profiling.summarise(path, categories) if path.exists() else {"error": "no output"}
        )
        summary[name]["file"] = str(path)
    return summary


def run_sections(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    skip = set(filter(None, args.skip.split(",")))
    config = StackConfig(args.api_workers, args.worker_concurrency, args.batch_delay_ms)
    results: dict[str, Any] = {
        "plan": plan.__dict__,
        "machine": report.machine(),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": config.__dict__ if not args.url else {"url": args.url},
    }
    if "model" not in skip:
        _progress("1 model limit")
        results["model"] = [
            row
            for threads in ((1,) if plan.name == "smoke" else (1, 2))
            for row in model_limit(plan.model_batches, threads, plan.model_seconds)
        ]
    pngs = mnist_pngs(max(plan.batch_images, 100))
    batch = batch_json(pngs[: plan.batch_images])
    truck = batch_json(pngs[: plan.burst_images])
    jpegs = [photo_jpeg(d, seed=d) for d in range(4)]
    _progress("starting the stack" if not args.url else f"using {args.url}")
    stack = Stack.attach(args.url) if args.url else Stack.start(config)
    try:
        _warm_up(stack, pngs, batch, min(100, plan.ladder[0]))
        if "sync" not in skip:
            _progress("2 single-image sync (open loop)")
            results["sync"] = _sync_ladder(plan, stack, pngs, "image/png", plan.ladder)
        if "batch" not in skip:
            _progress("3 batch sync")
            results["batch"] = _repeat(plan, _batch_spec(plan, stack, batch), stack)
            _progress(f"  {results['batch']['images_per_s']:.0f} img/s")
            _progress("3b batch sync, binary tensors (Open Inference Protocol)")
            body, headers = binary_infer(pngs[: plan.batch_images])
            spec = _batch_spec(plan, stack, body) | {
                "path": "/v2/models/mnist_cnn/infer",
                "content_type": "application/octet-stream",
                "headers": headers,
            }
            results["binary_batch"] = _repeat(plan, spec, stack)
            _progress(f"  {results['binary_batch']['images_per_s']:.0f} img/s")
        if "burst" not in skip:
            _progress("4 burst")
            spec = {"mode": "burst", "url": stack.url, "truck": truck, "trucks": plan.burst_trucks}
            spec |= {"images_per_truck": plan.burst_images, "probe": pngs}
            spec |= {"probe_rate": plan.probe_rate, "timeout": plan.burst_timeout_s}
            results["burst"] = _repeat(plan, spec, stack)
            _progress(f"  drained in {results['burst']['drain_s']} s")
        if "jpeg" not in skip:
            _progress("5 640x480 JPEG photos")
            results["jpeg"] = _sync_ladder(plan, stack, jpegs, "image/jpeg", plan.jpeg_rates)
        if args.profile and stack.pids:
            _progress(f"profiling (py-spy) at {args.profile_rate} req/s")
            results["profile"] = _profile(stack, pngs, args.profile_rate, 8)
    finally:
        stack.stop()
    return results


def run_matrix(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    """Each configuration on its own fresh stack: a short sync ladder and the batch path."""
    pngs = mnist_pngs(plan.batch_images)
    batch = batch_json(pngs[: plan.batch_images])
    results: dict[str, Any] = {"machine": report.machine(), "configs": []}
    for api_workers, concurrency, delay in itertools.product((1, 2), (1, 2), (1.0, 2.0, 5.0)):
        config = StackConfig(api_workers, concurrency, delay)
        _progress(config.label())
        stack = Stack.start(config)
        try:
            _warm_up(stack, pngs, batch, 100)
            sync = _sync_ladder(plan, stack, pngs, "image/png", MATRIX_LADDER)
            batch_result = _repeat(plan, _batch_spec(plan, stack, batch), stack)
        finally:
            stack.stop()
        results["configs"].append({"config": config.__dict__, "sync": sync, "batch": batch_result})
    return results


def matrix_rows(results: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    columns = ("DIGITS_API_WORKERS", "WORKER_CONC", "DELAY_MS")
    for rate in MATRIX_LADDER:
        columns += (f"{rate}/s achieved", f"{rate}/s p99 ms", f"{rate}/s CPU")
    columns += ("batch img/s",)
    rows = []
    for entry in results["configs"]:
        config = entry["config"]
        row = (str(config["api_workers"]), str(config["worker_concurrency"]))
        row += (f"{config['batch_delay_ms']:g}",)
        for step in entry["sync"]:
            row += (f"{step['achieved_rps']:.0f}", report._ms(step["p99_ms"]))
            row += (report._cpu(step["cpu"]),)
        row += (f"{entry['batch']['images_per_s']:,.0f}",)
        rows.append(row)
    return columns, rows


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    plan = PLANS["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.repeats:
        plan = Plan(**{**plan.__dict__, "repeats": args.repeats})
    if args.ladder:
        ladder = tuple(int(rate) for rate in args.ladder.split(","))
        plan = Plan(**{**plan.__dict__, "ladder": ladder})
    started = time.monotonic()
    if args.matrix:
        results = run_matrix(args, plan)
        columns, rows = matrix_rows(results)
        text = report.table(rows, columns)
    else:
        results = run_sections(args, plan)
        rows = report.rows(results)
        checks = report.verdicts(results)
        results["verdicts"] = [{"target": n, "met": m, "measured": g} for n, m, g in checks]
        text = report.table(rows) + "\n\nTargets (issue #8):\n" + report.verdict_text(checks)
    results["table"] = text
    results["wall_s"] = round(time.monotonic() - started, 1)
    results["load_avg_end"] = report.machine()["load_avg"]
    path = report.write_json(results, args.out or ("matrix" if args.matrix else plan.name))
    print(text)
    print(f"\nmachine: {results.get('machine')}; took {results['wall_s']} s; JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
