"""Helpers for the observability tests: scrape and read Prometheus text, build request bodies."""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.processes import ROOT, ManagedProcess, RedisServer
from tests.observability.prometheus import PrometheusServer

DIGIT7_PNG = (ROOT / "tests" / "data" / "digit7.png").read_bytes()
OUTPUT = ROOT / "test-output"


@dataclass
class Stack:
    redis: RedisServer
    api: ManagedProcess
    worker: ManagedProcess | None
    api_url: str
    worker_metrics_url: str
    prometheus: PrometheusServer | None = None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, timeout=15)

    def stop(self) -> None:
        self.api.stop()
        if self.worker:
            self.worker.stop()
        if self.prometheus:
            self.prometheus.stop()
        self.redis.stop()


def samples(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a /metrics page: (name, labels) -> value."""
    text = httpx.get(url, timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: dict, metric: str, /, **labels: str) -> float:
    return scrape.get((metric, frozenset(labels.items())), 0.0)


def total(scrape: dict, metric: str, /, **labels: str) -> float:
    """Sum over every series of `metric` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in scrape.items() if n == metric and wanted <= ls)


def json_images(images: list[bytes] | list[list[list[int]]]) -> bytes:
    items = [
        base64.b64encode(image).decode() if isinstance(image, bytes) else image for image in images
    ]
    return orjson.dumps({"images": items})


def predict(client: httpx.Client, body: bytes, content_type: str = "application/json"):
    return client.post("/v1/predict", content=body, headers={"Content-Type": content_type})


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


SLI = 'route=~"/v1/.+|/v2/models/.+",route!="/v1/slo",route!~".+/ready"'
"""The SLI selector of deploy/prometheus/rules/recording.yml (a test checks they match)."""


def sli_requests(scrape: dict) -> float:
    """Requests inside the SLI in one scrape of the API's /metrics."""
    return sum(
        v
        for (name, labels), v in scrape.items()
        if name == "digits_http_requests_total" and in_sli(dict(labels)["route"])
    )


def in_sli(route: str) -> bool:
    return (
        route.startswith(("/v1/", "/v2/models/"))
        and route != "/v1/slo"
        and not route.endswith("/ready")
    )


def close(got: float, want: float, series: int = 1) -> bool:
    """`increase()` extrapolates a window's count by up to one scrape interval at its end
    (by interval / age of the series): a count agrees if it is within 1 + 3 %, and one per
    series more for a sum of `series` counters (each extrapolated, then rounded)."""
    return abs(got - want) <= series + 0.03 * want


def quiescent(stack: Stack) -> dict:
    """Wait until Prometheus has scraped every count the processes hold, its rules have run
    on them, and nothing moved since: a test can then count exactly. Returns `/v1/slo`."""
    from harness.processes import wait_until

    previous: list = [None]
    prometheus = stack.prometheus
    assert prometheus is not None

    def state() -> tuple[tuple, dict]:
        api = sli_requests(samples(f"{stack.api_url}/metrics"))
        predictions = total(
            samples(f"{stack.worker_metrics_url}/metrics"), "digits_predictions_total"
        )
        scraped = prometheus.scalar(f"sum(digits_http_requests_total{{{SLI}}})")
        scraped_predictions = prometheus.scalar("sum(digits_predictions_total)")
        body = httpx.get(f"{stack.api_url}/v1/slo", timeout=5).json()
        windows = body["windows"] or {}
        counts = tuple(windows.get(w, {}).get("requests", -1) for w in ("5m", "1h", "24h"))
        return (api, predictions, scraped, scraped_predictions, *counts), body

    def settled():
        now, body = state()
        stable = now == previous[0] and now[0] == now[2] and now[1] == now[3]
        # Every window's rules have run on the newest scrape when 24 h >= 1 h >= 5 min.
        stable = stable and now[4] <= now[5] <= now[6]
        previous[0] = now
        return stable and body

    return wait_until(settled, 60, "Prometheus to hold every count", interval=1.2)


def render(url: str, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on `url` (`--dump-dom` or `--screenshot=...` in `args`)."""
    binary = chromium()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        argv = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--window-size=1400,1800",
            "--virtual-time-budget=4000",  # let the page fetch /v1/slo and draw before capture
            *args,
            url,
        ]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
