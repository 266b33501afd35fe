"""`python -m bench.chaos` (`make chaos`): faults under open-loop load, one table per case.

One throw-away stack on loopback (bench.stack: own redis-server on a free port), sync
`/v1/predict` traffic at a fixed rate while a fault is injected, then every accepted job is
followed to its end. Per case: accepted (200 + 202), done, failed, lost (accepted, then
unknown to the store), stuck (not final `--settle` seconds after the load), the slowest
answer and the slowest refusal. Cases: Redis paused, worker main process killed, an API
process killed, Redis full, and open-loop overload at 3x and 10x the measured capacity.
Every run is bounded: `--seconds` of load per case, at most `--max-requests` requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson
import uvloop

from bench.http import Client
from bench.loadgen import Tally, closed_loop, open_loop
from bench.samples import batch_json, digit_png
from bench.stack import Stack, StackConfig
from harness.processes import group_pids, job_ids_by_status, start_worker, wait_for_workers
from harness.redis_memory import fill

FINAL = ("done", "failed", "reviewed")
JSON = "application/json"
MAX_CONNECTIONS = 12_000
"""The generator's connection cap: below the 20,000 file descriptors a process gets here."""


@dataclass
class Case:
    name: str
    rate_factor: float | None = None
    """Offered rate as a multiple of measured capacity; None: `--rate` req/s."""
    fault: Callable[[Stack], Callable[[], None]] | None = None
    """Injects the fault (called 1 s into the load); returns what undoes it (at 3 s)."""


def _redis_paused(stack: Stack):
    stack._redis.process.signal(signal.SIGSTOP)
    return lambda: stack._redis.process.signal(signal.SIGCONT)


def _worker_killed(stack: Stack):
    worker = stack._processes[0]
    worker.signal(signal.SIGKILL)  # main process and pool: nothing cleans up

    def replace() -> None:
        worker.stop()
        stack._processes[0] = start_worker(
            stack._redis.url, name="chaos-worker", DIGITS_WORKER_CONCURRENCY="2"
        )

    return replace


def _api_process_killed(stack: Stack):
    api = stack._processes[1]
    children = [pid for pid in group_pids(api.pid) if pid != api.pid]
    os.kill(children[0], signal.SIGKILL)  # one uvicorn process; uvicorn starts another
    return lambda: None


def _redis_full(stack: Stack):
    client = stack._redis.client()
    fill(client)

    def free() -> None:
        client.delete(*[f"junk:{index}" for index in range(600)])
        client.config_set("maxmemory", "0")

    return free


CASES = [
    Case("redis paused 2 s", fault=_redis_paused),
    Case("worker main process SIGKILL", fault=_worker_killed),
    Case("API process SIGKILL", fault=_api_process_killed),
    Case("Redis full 2 s", fault=_redis_full),
    Case("overload 3x", rate_factor=3),
    Case("overload 10x", rate_factor=10),
]


def _run_case(stack: Stack, case: Case, rate: float, seconds: float, max_requests: int) -> dict:
    body = [digit_png(d, seed=d) for d in range(10)]
    duration = min(seconds, max_requests / rate)
    tally = Tally()

    async def load() -> dict:
        # Open loop for real: every request may have a connection of its own (a sync request
        # holds one up to its 2 s deadline), so none waits in the generator for a free one.
        connections = int(min(MAX_CONNECTIONS, max(1000, rate * 2.5)))
        client = Client("127.0.0.1", stack.port, connections, 15.0)
        try:
            loop = asyncio.get_running_loop()
            traffic = asyncio.create_task(
                open_loop(client, "/v1/predict", body, "image/png", rate, duration, tally=tally)
            )
            if case.fault is not None:
                await asyncio.sleep(1.0)
                undo = await loop.run_in_executor(None, case.fault, stack)
                await asyncio.sleep(2.0)
                await loop.run_in_executor(None, undo)
            return await traffic
        finally:
            client.close()

    summary = uvloop.run(load())
    return {"summary": summary, "tally": tally}


def _settle(stack: Stack, ids: list[str], settle_s: float) -> dict[str, list[str]]:
    client = stack._redis.client()
    deadline = time.monotonic() + settle_s
    while True:
        groups = job_ids_by_status(client, ids)
        if set(groups) <= set(FINAL) or time.monotonic() > deadline:
            return groups
        time.sleep(0.2)


def capacity(stack: Stack) -> float:
    """Sync requests per second the stack answers with 32 clients in a closed loop (3 s)."""

    async def measure() -> dict:
        client = Client("127.0.0.1", stack.port, 64, 15.0)
        try:
            return await closed_loop(client, "/v1/predict", batch_json([digit_png(7)]), 1, 32, 3.0)
        finally:
            client.close()

    return float(uvloop.run(measure())["requests_per_s"])


def _percentiles(seconds: list[float]) -> str:
    if not seconds:
        return ""
    p50, p99 = np.percentile(np.asarray(seconds) * 1e3, [50, 99])
    return f" (p50 {p50:.0f} ms, p99 {p99:.0f} ms)"


REFUSAL_CASE = "refusal capacity (64 keep-alive clients, workers frozen)"


def refusal_capacity(stack: Stack, seconds: float, clients: int = 64) -> dict:
    """Refusals per second while admission refuses (workers frozen, queue past the budget),
    from `clients` keep-alive clients in a closed loop: what a refusal costs the service.
    The jobs queued to get there are followed to their end like any other."""
    body = batch_json([digit_png(7)])
    port = stack.port
    worker = stack._processes[0]
    queued, refused = Tally(), Tally()

    async def refuse() -> dict:
        client = Client("127.0.0.1", port, clients, 15.0)
        try:
            for _ in range(10_000):  # fill the interactive queue past the sync budget
                status, answer = await client.request("POST", "/v1/predict?wait=0", body, JSON)
                if status != 202:
                    break
                queued.ids.append(orjson.loads(answer)["id"])
            return await closed_loop(
                client, "/v1/predict", body, 1, clients, seconds, tally=refused
            )
        finally:
            client.close()

    worker.signal(signal.SIGSTOP)
    try:
        run = uvloop.run(refuse())
    finally:
        worker.signal(signal.SIGCONT)
    groups = _settle(stack, queued.ids, 40.0)
    return {
        "refusals_per_s": len(refused.refusals) / run["elapsed_s"],  # answered 4xx/5xx only
        "answered": refused.ok + refused.accepted,
        "kinds": refused.error_kinds,
        "latency": _percentiles(refused.refusals),
        "queued": len(queued.ids),
        "lost_or_stuck": len(queued.ids) - sum(len(groups.get(s, [])) for s in FINAL),
    }


def table(name: str, row: dict) -> str:
    heads = ["accepted", "done", "failed", "lost", "stuck", "slowest answer", "slowest refusal"]
    values = [
        str(row["accepted"]),
        str(row["done"]),
        str(row["failed"]),
        str(row["lost"]),
        str(row["stuck"]),
        f"{row['slowest_answer_ms']:.0f} ms" if row["slowest_answer_ms"] is not None else "-",
        f"{row['slowest_refusal_ms']:.0f} ms" if row["slowest_refusal_ms"] is not None else "-",
    ]
    widths = [max(len(h), len(v)) for h, v in zip(heads, values, strict=True)]
    line = " | ".join(h.rjust(w) for h, w in zip(heads, widths, strict=True))
    data = " | ".join(v.rjust(w) for v, w in zip(values, widths, strict=True))
    extra = (
        f"  offered {row['offered']} at {row['rate']:.0f} req/s; refusals {row['refusals']}"
        f"{row['refusal_percentiles']}; generator send lag p99 {row['send_lag_p99_ms']:.0f} ms"
    )
    return f"\n== {name}\n{line}\n{data}\n{extra}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--rate", type=float, default=40.0, help="req/s for the fault cases")
    parser.add_argument("--seconds", type=float, default=5.0, help="load per case")
    parser.add_argument("--max-requests", type=int, default=3000, help="cap per case")
    parser.add_argument("--settle", type=float, default=40.0, help="wait for jobs to end")
    parser.add_argument("--only", help="run the cases whose name contains this")
    args = parser.parse_args(argv)
    stack = Stack.start(StackConfig(api_workers=2, worker_concurrency=2))
    worst = 0
    try:
        measured: float | None = None
        for case in CASES:
            if args.only and args.only not in case.name:
                continue
            if case.rate_factor is not None and measured is None:
                measured = capacity(stack)
                print(f"measured capacity: {measured:.0f} req/s (1 image, 32 clients)")
            rate = args.rate if case.rate_factor is None else case.rate_factor * measured
            wait_for_workers(stack._redis.url, count=2, timeout=120)
            run = _run_case(stack, case, rate, args.seconds, args.max_requests)
            tally: Tally = run["tally"]
            groups = _settle(stack, tally.ids, args.settle)
            row = {
                "rate": rate,
                "offered": run["summary"]["sent"],
                "accepted": len(tally.ids),
                "done": len(groups.get("done", [])) + len(groups.get("reviewed", [])),
                "failed": len(groups.get("failed", [])),
                "lost": len(groups.get("missing", [])),
                "stuck": len(groups.get("queued", [])) + len(groups.get("running", [])),
                "refusals": tally.error_kinds,
                "slowest_answer_ms": max(tally.latencies) * 1e3 if tally.latencies else None,
                "slowest_refusal_ms": max(tally.refusals) * 1e3 if tally.refusals else None,
                "refusal_percentiles": _percentiles(tally.refusals),
                "send_lag_p99_ms": run["summary"]["send_lag_p99_ms"],
            }
            print(table(case.name, row), flush=True)
            worst = max(worst, row["lost"] + row["stuck"])
        if not args.only or args.only in REFUSAL_CASE:
            wait_for_workers(stack._redis.url, count=2, timeout=120)
            row = refusal_capacity(stack, min(args.seconds, 4.0))
            print(
                f"\n== {REFUSAL_CASE}\n  {row['refusals_per_s']:.0f} refusals/s "
                f"{row['kinds']}{row['latency']}; answered {row['answered']}; "
                f"{row['queued']} jobs queued to get there, {row['lost_or_stuck']} lost or stuck",
                flush=True,
            )
            worst = max(worst, row["lost_or_stuck"])
    finally:
        stack.stop()
    return 1 if worst else 0


if __name__ == "__main__":
    sys.exit(main())
