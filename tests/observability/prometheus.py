"""A throw-away Prometheus for the integration tests: the repo's rules and `make run`'s
config template (deploy/prometheus/local.yml), a free port, a temporary data directory."""

from __future__ import annotations

import math
import shutil
import tempfile

import httpx
import pytest

from harness.processes import ROOT, ManagedProcess, free_port, wait_until

TEMPLATE = ROOT / "deploy" / "prometheus" / "local.yml"
RULES = ROOT / "deploy" / "prometheus" / "rules"
INTERVAL_S = 1
"""Scrape and rule interval of the test Prometheus (`make run`: 5 s)."""


def require_prometheus() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed: `make test` installs it (apt-get prometheus)")
    return binary


def local_config(api_target: str, worker_target: str, interval: str) -> str:
    """deploy/prometheus/local.yml filled in, as scripts/run.sh does with sed."""
    text = TEMPLATE.read_text()
    for key, value in (
        ("@INTERVAL@", interval),
        ("@RULES@", str(RULES)),
        ("@API_TARGET@", api_target),
        ("@WORKER_TARGET@", worker_target),
    ):
        text = text.replace(key, value)
    return text


class PrometheusServer:
    def __init__(self, api_port: int, worker_port: int) -> None:
        binary = require_prometheus()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = tempfile.mkdtemp(prefix="digits-prometheus-")
        config = f"{self.dir}/prometheus.yml"
        with open(config, "w") as file:
            file.write(
                local_config(f"127.0.0.1:{api_port}", f"127.0.0.1:{worker_port}", f"{INTERVAL_S}s")
            )
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.dir}/data",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.process = ManagedProcess(f"prometheus-{self.port}", argv, {})
        try:
            wait_until(self._ready, 30, f"prometheus on {self.port}")
        except TimeoutError:
            self.stop()
            raise

    def _ready(self) -> bool:
        return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200

    def query(self, expr: str, at: float | None = None) -> dict[tuple, float]:
        """Instant query: frozenset(labels) -> value (NaN left out)."""
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        body = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=5).json()
        assert body["status"] == "success", body
        values = {
            frozenset(item["metric"].items()): float(item["value"][1])
            for item in body["data"]["result"]
        }
        return {labels: value for labels, value in values.items() if not math.isnan(value)}

    def scalar(self, expr: str, at: float | None = None) -> float | None:
        values = list(self.query(expr, at).values())
        return values[0] if values else None

    def targets_up(self) -> bool:
        up = self.query("up")
        return len(up) == 2 and all(value == 1 for value in up.values())

    def aged(self, seconds: int = 25) -> bool:
        """Both targets have been scraped for `seconds` (at the 1 s interval)."""
        counts = self.query("count_over_time(up[5m])")
        return len(counts) == 2 and min(counts.values()) >= seconds

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
