"""The load generator: a separate process (`python -m bench.loadgen SPEC_FILE`) on loopback.

Open loop for the latency ladder: request i is *due* at t0 + i/rate whether or not earlier
ones have answered, and its latency is counted from when it was due, so a slow server cannot
hide its queueing by slowing the client down (coordinated omission). One asyncio loop on
uvloop with a minimal keep-alive HTTP client (`bench.http`). Prints one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson
import uvloop

from bench.http import Client

CLIENT_TIMEOUT_S = 15.0


@dataclass
class Tally:
    """Outcomes of a set of requests; latencies in seconds."""

    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    accepted: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    refusals: list[float] = field(default_factory=list)
    """Latencies of answered refusals (4xx/5xx): a refusal must be fast too."""
    ids: list[str] = field(default_factory=list)
    """Job ids of the 200s and 202s, for a fault run to check that none was lost."""

    def record(self, status: int | str, latency: float, job_id: str | None = None) -> None:
        if status == 200:
            self.ok += 1
            self.latencies.append(latency)
        elif status == 202:
            self.accepted += 1
            self.latencies.append(latency)
        else:
            self.errors += 1
            self.error_kinds[str(status)] = self.error_kinds.get(str(status), 0) + 1
            if isinstance(status, int):
                self.refusals.append(latency)
        if job_id:
            self.ids.append(job_id)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies) * 1e3
        pct = np.percentile(lat, [50, 95, 99]).tolist() if lat.size else [None] * 3
        return {
            "ok": self.ok,
            "accepted_202": self.accepted,
            "errors": self.errors,
            "error_kinds": self.error_kinds,
            "p50_ms": pct[0],
            "p95_ms": pct[1],
            "p99_ms": pct[2],
            "max_ms": float(lat.max()) if lat.size else None,
        }


async def _post(
    client: Client,
    path: str,
    body: bytes,
    content_type: str,
    due: float,
    tally: Tally,
    headers: tuple[tuple[str, str], ...] = (),
) -> dict | None:
    loop = asyncio.get_running_loop()
    try:
        status, payload = await client.request("POST", path, body, content_type, headers)
    except Exception as exc:  # any failure is an error of its kind: refused, reset, timeout
        tally.record(type(exc).__name__, loop.time() - due)
        return None
    try:
        answer = orjson.loads(payload) if status in (200, 202) else None
    except orjson.JSONDecodeError:  # a binary answer (Open Inference Protocol): no job id
        answer = None
    tally.record(status, loop.time() - due, answer.get("id") if answer else None)
    return answer


async def open_loop(
    client: Client,
    path: str,
    bodies: list[bytes],
    content_type: str,
    rate: float,
    duration: float,
    stop: asyncio.Event | None = None,
    tally: Tally | None = None,
    post: Callable[..., Awaitable[Any]] | None = None,
) -> dict[str, Any]:
    """Send at `rate` req/s for `duration` s (or until `stop`); wait for every answer.

    `post`: what sends one request, called as `_post` is (a bench that records more per
    request than the tally brings its own)."""
    post = post or _post
    loop = asyncio.get_running_loop()
    tally, tasks, lags = tally or Tally(), [], []
    total = int(rate * duration)
    t0 = loop.time() + 0.05
    for i in range(total):
        if stop is not None and stop.is_set():
            break
        due = t0 + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(loop.time() - due)
        body = bodies[i % len(bodies)]
        tasks.append(asyncio.create_task(post(client, path, body, content_type, due, tally)))
    sent_window = loop.time() - t0
    await asyncio.gather(*tasks)
    # NOTE: at least the nominal window: n requests at rate r take n/r seconds to offer.
    elapsed = max(loop.time() - t0, len(tasks) / rate)
    lag = np.asarray(lags) * 1e3 if lags else np.zeros(1)
    return {
        "offered_rps": rate,
        "sent": len(tasks),
        "send_window_s": sent_window,
        "elapsed_s": elapsed,
        "achieved_rps": tally.ok / elapsed if elapsed > 0 else 0.0,
        "send_lag_p99_ms": float(np.percentile(lag, 99)),
        **tally.summary(),
    }


async def closed_loop(
    client: Client,
    path: str,
    body: bytes,
    images_per_request: int,
    concurrency: int,
    duration: float,
    content_type: str = "application/json",
    headers: tuple[tuple[str, str], ...] = (),
    tally: Tally | None = None,
) -> dict[str, Any]:
    """`concurrency` clients each sending the next request when the last answered."""
    loop = asyncio.get_running_loop()
    tally = tally or Tally()
    t0 = loop.time()
    end = t0 + duration

    async def one_client() -> None:
        while loop.time() < end:
            await _post(client, path, body, content_type, loop.time(), tally, headers)

    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    elapsed = loop.time() - t0
    return {
        "concurrency": concurrency,
        "images_per_request": images_per_request,
        "elapsed_s": elapsed,
        "images_per_s": tally.ok * images_per_request / elapsed,
        "requests_per_s": tally.ok / elapsed,
        **tally.summary(),
    }


async def connections(
    client: Client,
    path: str,
    bodies: list[tuple[bytes, tuple[tuple[str, str], ...]]],
    content_type: str,
    connections: int,
    duration: float,
) -> dict[str, Any]:
    """Closed loop like wrk: `connections` clients, each sending its next request (the next of
    `bodies`, each with its own extra headers) as soon as the last one answered."""
    loop = asyncio.get_running_loop()
    tally = Tally()
    t0 = loop.time()
    end = t0 + duration

    async def one_client(offset: int) -> None:
        i = offset
        while loop.time() < end:
            body, headers = bodies[i % len(bodies)]
            await _post(client, path, body, content_type, loop.time(), tally, headers)
            i += 1

    await asyncio.gather(*(one_client(c) for c in range(connections)))
    elapsed = loop.time() - t0
    return {
        "connections": connections,
        "elapsed_s": elapsed,
        "achieved_rps": tally.ok / elapsed,
        **tally.summary(),
    }


async def burst(
    client: Client,
    truck: bytes,
    trucks: int,
    images_per_truck: int,
    probe: list[bytes],
    probe_rate: float,
    timeout: float,
) -> dict[str, Any]:
    """Submit `trucks` jobs at once, poll until all are final; time sync requests meanwhile."""
    loop = asyncio.get_running_loop()
    submit_tally = Tally()
    t0 = loop.time()
    answers = await asyncio.gather(
        *(
            _post(client, "/v1/jobs", truck, "application/json", t0, submit_tally)
            for _ in range(trucks)
        )
    )
    submitted_s = loop.time() - t0
    pending = {a["id"] for a in answers if a and "id" in a}
    accepted = len(pending)
    done_at: dict[str, float] = {}
    failed: list[str] = []
    stop = asyncio.Event()
    probe_task = asyncio.create_task(
        open_loop(client, "/v1/predict", probe, "image/png", probe_rate, timeout, stop)
    )
    deadline = t0 + timeout
    polls = 0

    async def poll(job_id: str) -> None:
        status_code, payload = await client.request("GET", f"/v1/jobs/{job_id}")
        status = orjson.loads(payload).get("status") if status_code == 200 else None
        if status in ("done", "failed", "reviewed"):
            pending.discard(job_id)
            done_at[job_id] = loop.time() - t0
            if status == "failed":
                failed.append(job_id)

    while pending and loop.time() < deadline:
        polls += 1
        round_start = loop.time()
        for chunk in _chunks(list(pending), 32):
            await asyncio.gather(*(poll(job_id) for job_id in chunk), return_exceptions=True)
        # NOTE: rounds at most every 50 ms: polling must not become the load being measured.
        await asyncio.sleep(max(0.0, 0.05 - (loop.time() - round_start)))
    stop.set()
    sync = await probe_task
    drained = max(done_at.values()) if done_at else None
    completed = len(done_at) - len(failed)
    return {
        "trucks": trucks,
        "images": trucks * images_per_truck,
        "submitted": accepted,
        "submit_errors": submit_tally.errors,
        "submit_s": submitted_s,
        "drain_s": drained,
        "completed": completed,
        "failed": len(failed),
        "refused": trucks - accepted,  # answered 503 at submission: refused, not lost
        "lost": accepted - len(done_at),  # accepted, never final before the timeout
        "images_per_s": (completed * images_per_truck / drained) if drained else 0.0,
        "poll_rounds": polls,
        "sync_during_burst": sync,
    }


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    url = urlsplit(spec["url"])
    client = Client(url.hostname, url.port or 80, spec.get("connections", 1000), CLIENT_TIMEOUT_S)
    try:
        mode = spec["mode"]
        if mode == "rate":
            return await open_loop(
                client,
                "/v1/predict",
                spec["bodies"],
                spec["content_type"],
                spec["rate"],
                spec["duration"],
            )
        if mode == "batch":
            return await closed_loop(
                client,
                spec.get("path", "/v1/predict"),
                spec["body"],
                spec["images_per_request"],
                spec["concurrency"],
                spec["duration"],
                spec.get("content_type", "application/json"),
                spec.get("headers", ()),
            )
        if mode == "connections":
            return await connections(
                client,
                spec["path"],
                spec["bodies"],
                spec["content_type"],
                spec["connections"],
                spec["duration"],
            )
        if mode == "burst":
            return await burst(
                client,
                spec["truck"],
                spec["trucks"],
                spec["images_per_truck"],
                spec["probe"],
                spec["probe_rate"],
                spec["timeout"],
            )
        raise ValueError(f"unknown mode {mode}")
    finally:
        client.close()


def main() -> None:
    with open(sys.argv[1], "rb") as handle:
        spec = pickle.load(handle)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    started = time.process_time()
    result = uvloop.run(run(spec))
    result["loadgen_cpu_s"] = time.process_time() - started
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
