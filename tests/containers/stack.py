"""The compose stack on a real engine, for tests/containers: one throw-away compose project
(unique name, free loopback ports, its own image tag), driven with the `docker` CLI.

Nothing is sent anywhere but 127.0.0.1 (nginx, Prometheus and Flower are published on
loopback only) and the engine's own networks (`docker exec`). Every wait is on a condition
with a timeout, never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.processes import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "test-output" / "containers" / "report.json"
PASS_ENV = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_BUILDKIT", "DOCKER_CONFIG", "DOCKER_CONTEXT")
"""The only variables `docker compose` sees from this process: compose passes settings through
from its environment, so a stray DIGITS_REVIEW_THRESHOLD in the test runner's shell must not
leak in."""


class CommandFailed(AssertionError):
    pass


@dataclass
class Stack:
    project: str = field(default_factory=lambda: f"digits-ct-{os.getpid()}-{secrets.token_hex(2)}")
    workdir: Path = ROOT / "test-output" / "containers"
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    flower_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tag = self.project.removeprefix("digits-")
        self.http_port, self.prometheus_port, self.flower_port = (free_port() for _ in range(3))
        self.env_file = self.workdir / f"{self.project}.env"
        self.env_file.write_text(
            "\n".join(
                [
                    f"REDIS_PASSWORD={secrets.token_urlsafe(16)}",
                    f"DIGITS_API_KEYS={self.api_key}",
                    "FLOWER_USER=admin",
                    f"FLOWER_PASSWORD={self.flower_password}",
                    f"GRAFANA_ADMIN_PASSWORD={secrets.token_urlsafe(16)}",
                    f"IMAGE_TAG={self.tag}",
                    f"HTTP_PORT=127.0.0.1:{self.http_port}",
                    f"PROMETHEUS_PORT=127.0.0.1:{self.prometheus_port}",
                    f"FLOWER_PORT=127.0.0.1:{self.flower_port}",
                    "COMPOSE_PROFILES=flower",
                    "",
                ]
            )
        )
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.client = httpx.Client(
            base_url=self.base, headers={"X-API-Key": self.api_key}, timeout=15
        )

    # --- commands ---
    def run(self, argv: list[str], timeout: float = 120, check: bool = True) -> str:
        env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        result = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise CommandFailed(
                f"{' '.join(argv)} -> {result.returncode}\n{result.stdout[-3000:]}\n"
                f"{result.stderr[-3000:]}"
            )
        return result.stdout

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        argv = ["docker", "compose", "-p", self.project, "--env-file", str(self.env_file)]
        return self.run([*argv, *args], timeout=timeout, check=check)

    def docker(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        return self.run(["docker", *args], timeout=timeout, check=check)

    def timed(self, name: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return function(*args, **kwargs)
        finally:
            self.report.setdefault("timings_s", {})[name] = round(time.monotonic() - start, 1)

    # --- the stack ---
    def image(self, name: str) -> str:
        return f"digits-{name}:{self.tag}"

    def containers(self, service: str) -> list[str]:
        """Running containers of a service, by id."""
        return self.compose("ps", "-q", service).split()

    def inspect(self, container: str) -> dict[str, Any]:
        return json.loads(self.docker("inspect", container))[0]

    def wait_healthy(self, service: str, count: int, timeout: float = 120) -> list[str]:
        def healthy() -> list[str] | None:
            ids = self.containers(service)
            states = [self.inspect(c)["State"] for c in ids]
            ok = [
                c
                for c, s in zip(ids, states, strict=True)
                if s.get("Health", {}).get("Status") == "healthy"
            ]
            return ok if len(ok) == count == len(ids) else None

        try:
            return wait_until(
                healthy, timeout, f"{count} healthy {service} container(s)", interval=0.5
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.health_report(service)}") from None

    def health_report(self, service: str) -> str:
        """Each container's health status and its last probe's output, for a failure message."""
        lines = []
        for c in self.containers(service):
            health = self.inspect(c)["State"].get("Health", {})
            last = (health.get("Log") or [{}])[-1]
            output = str(last.get("Output", "")).strip()[-500:]
            lines.append(f"{c[:12]} {health.get('Status')}: exit {last.get('ExitCode')} {output}")
        return "\n".join(lines)

    def hostname(self, container: str) -> str:
        return self.inspect(container)["Config"]["Hostname"]

    def down(self) -> None:
        self.client.close()
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=180, check=False)
        # The image tags only; their layers stay as cache for the next run.
        self.docker(
            "image", "rm", "--no-prune", self.image("api"), self.image("worker"), check=False
        )
        self.env_file.unlink(missing_ok=True)

    def write_report(self) -> None:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps(self.report, indent=2, sort_keys=True) + "\n")

    # --- the service ---
    def submit_job(self, files: list[bytes], kind: str = "digits") -> str | None:
        """A bulk job; its id when accepted (202), None when refused (e.g. Redis restarting)."""
        parts = [("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(files)]
        try:
            response = self.client.post("/v1/jobs", params={"kind": kind}, files=parts)
        except httpx.HTTPError:
            return None
        if response.status_code == 202:
            return response.json()["id"]
        assert response.status_code in (502, 503, 504), response.text
        return None

    def job(self, job_id: str) -> dict[str, Any] | None:
        try:
            response = self.client.get(f"/v1/jobs/{job_id}")
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def wait_jobs(self, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        """Every job final; returns the final bodies (a lost job times out here)."""
        done: dict[str, dict[str, Any]] = {}

        def all_final() -> bool:
            for job_id in ids:
                if job_id not in done:
                    body = self.job(job_id)
                    if body and body["status"] in ("done", "failed", "reviewed"):
                        done[job_id] = body
            return len(done) == len(ids)

        try:
            wait_until(all_final, timeout, "every accepted job to finish", interval=0.5)
        except TimeoutError as error:
            missing = {i: self.job(i) for i in ids if i not in done}
            raise AssertionError(
                f"{len(missing)} of {len(ids)} jobs not final: {missing}"
            ) from error
        return done

    def worker_batches(self) -> dict[str, int]:
        """Batches run so far per worker container (hostname), from the compose Prometheus
        (the only store of counts; a scrape target is one container's IP)."""
        response = httpx.get(
            f"http://127.0.0.1:{self.prometheus_port}/api/v1/query",
            params={"query": "sum by (instance) (digits_batch_size_count)"},
            timeout=10,
        )
        by_ip = {
            item["metric"]["instance"].rsplit(":", 1)[0]: int(float(item["value"][1]))
            for item in response.json()["data"]["result"]
        }
        totals: dict[str, int] = {}
        for container in self.containers("worker"):
            networks = self.inspect(container)["NetworkSettings"]["Networks"].values()
            ips = {network["IPAddress"] for network in networks}
            totals[self.hostname(container)] = sum(by_ip.get(ip, 0) for ip in ips)
        return totals
