"""The load generator: a separate process (`python -m bench.loadgen SPEC_FILE`) on loopback.

Open loop for the latency ladder: request i is *due* at t0 + i/rate whether or not earlier
ones have answered, and its latency is counted from when it was due, so a slow server cannot
hide its queueing by slowing the client down (coordinated omission). One asyncio loop on
uvloop with aiohttp keep-alive connections. Prints one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import orjson
import uvloop

CLIENT_TIMEOUT_S = 15.0


@dataclass
class Tally:
    """Outcomes of a set of requests; latencies in seconds."""

    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    accepted: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def record(self, status: int | str, latency: float) -> None:
        if status == 200:
            self.ok += 1
            self.latencies.append(latency)
        elif status == 202:
            self.accepted += 1
            self.latencies.append(latency)
        else:
            self.errors += 1
            self.error_kinds[str(status)] = self.error_kinds.get(str(status), 0) + 1

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


def _session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, force_close=False, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict, due: float, tally: Tally
) -> dict | None:
    loop = asyncio.get_running_loop()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            payload = await response.read()
            tally.record(response.status, loop.time() - due)
            return orjson.loads(payload) if response.status in (200, 202) else None
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.record(type(exc).__name__, loop.time() - due)
        return None


async def open_loop(
    session: aiohttp.ClientSession,
    url: str,
    bodies: list[bytes],
    content_type: str,
    rate: float,
    duration: float,
    stop: asyncio.Event | None = None,
) -> dict[str, Any]:
    """Send at `rate` req/s for `duration` s (or until `stop`); wait for every answer."""
    loop = asyncio.get_running_loop()
    headers = {"Content-Type": content_type}
    tally, tasks, lags = Tally(), [], []
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
        tasks.append(asyncio.create_task(_post(session, url, body, headers, due, tally)))
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
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    images_per_request: int,
    concurrency: int,
    duration: float,
) -> dict[str, Any]:
    """`concurrency` clients each sending the next request when the last answered."""
    loop = asyncio.get_running_loop()
    headers = {"Content-Type": "application/json"}
    tally = Tally()
    t0 = loop.time()
    end = t0 + duration

    async def client() -> None:
        while loop.time() < end:
            await _post(session, url, body, headers, loop.time(), tally)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = loop.time() - t0
    return {
        "concurrency": concurrency,
        "images_per_request": images_per_request,
        "elapsed_s": elapsed,
        "images_per_s": tally.ok * images_per_request / elapsed,
        "requests_per_s": tally.ok / elapsed,
        **tally.summary(),
    }


async def burst(
    session: aiohttp.ClientSession,
    base: str,
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
    headers = {"Content-Type": "application/json"}
    url = f"{base}/v1/jobs"
    answers = await asyncio.gather(
        *(_post(session, url, truck, headers, t0, submit_tally) for _ in range(trucks))
    )
    submitted_s = loop.time() - t0
    pending = {a["id"] for a in answers if a and "id" in a}
    accepted = len(pending)
    done_at: dict[str, float] = {}
    failed: list[str] = []
    stop = asyncio.Event()
    probe_task = asyncio.create_task(
        open_loop(session, f"{base}/v1/predict", probe, "image/png", probe_rate, timeout, stop)
    )
    deadline = t0 + timeout
    polls = 0

    async def poll(job_id: str) -> None:
        async with session.get(f"{base}/v1/jobs/{job_id}") as response:
            view = await response.json(loads=orjson.loads) if response.status == 200 else {}
        status = view.get("status")
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
        "lost": trucks - completed,
        "images_per_s": (completed * images_per_truck / drained) if drained else 0.0,
        "poll_rounds": polls,
        "sync_during_burst": sync,
    }


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    async with _session(spec.get("connections", 1000)) as session:
        mode, url = spec["mode"], spec["url"]
        if mode == "rate":
            return await open_loop(
                session,
                url + "/v1/predict",
                spec["bodies"],
                spec["content_type"],
                spec["rate"],
                spec["duration"],
            )
        if mode == "batch":
            return await closed_loop(
                session,
                url + "/v1/predict",
                spec["body"],
                spec["images_per_request"],
                spec["concurrency"],
                spec["duration"],
            )
        if mode == "burst":
            return await burst(
                session,
                url,
                spec["truck"],
                spec["trucks"],
                spec["images_per_truck"],
                spec["probe"],
                spec["probe_rate"],
                spec["timeout"],
            )
        raise ValueError(f"unknown mode {mode}")


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
