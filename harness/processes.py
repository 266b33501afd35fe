"""Real processes for integration tests: a throw-away redis-server, workers, the API.

Everything listens on free loopback ports, so the machine's own Redis is never touched.
Every wait polls a condition with a deadline; nothing sleeps blindly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import redis

from common.contract import FINAL_STATUSES, WORKER_HEARTBEAT_KEY, job_key
from workers.shutdown import process_table

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = ROOT / "test-output" / "logs"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    condition: Callable[[], T], timeout: float, message: str = "condition", interval: float = 0.05
) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the condition may raise until the thing is up
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout}s waiting for {message} (last error: {last_error})"
    )


class ManagedProcess:
    """A child process with its output in test-output/logs/<name>.log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOG_DIR / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Signal the whole process group (main process and its children)."""
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def terminate(self) -> None:
        """SIGTERM to the main process only, as `docker stop` does to PID 1."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (graceful), then SIGKILL of the whole process group if it lingers."""
        if self.alive():
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # no orphaned pool processes
        self._log.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class RedisServer:
    def __init__(self, port: int | None = None, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make test` (it installs it)")
        self.port = port or free_port()
        self.dir = LOG_DIR.parent / "redis" / str(self.port)
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(self.dir), *extra]
        self.process = ManagedProcess(f"redis-{self.port}", argv, {})
        self.url = f"redis://127.0.0.1:{self.port}/0"
        wait_until(lambda: self.client().ping(), 10, f"redis-server on {self.port}")

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=1)

    def stop(self) -> None:
        self.process.stop()


def start_worker(redis_url: str, name: str = "worker", **env: str) -> ManagedProcess:
    settings = {
        "DIGITS_REDIS_URL": redis_url,
        "DIGITS_WORKER_CONCURRENCY": "1",
        "DIGITS_HEARTBEAT_INTERVAL_S": "0.5",
        "DIGITS_LOG_LEVEL": "INFO",
        **env,
    }
    return ManagedProcess(name, [sys.executable, "-m", "workers"], settings)


def live_workers(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    return client.zcount(WORKER_HEARTBEAT_KEY, time.time() - 3, "+inf")


def wait_for_workers(redis_url: str, count: int = 1, timeout: float = 60) -> None:
    wait_until(lambda: live_workers(redis_url) >= count, timeout, f"{count} worker(s) ready")


def wait_for_job(http: httpx.Client, job_id: str, timeout: float = 10) -> dict:
    """Poll `GET /v1/jobs/<id>` until the job is final; returns its last body."""

    def final() -> dict | None:
        body = http.get(f"/v1/jobs/{job_id}").json()
        return body if body["status"] in FINAL_STATUSES else None

    return wait_until(final, timeout, f"job {job_id} to finish")


def start_api(redis_url: str, port: int, name: str = "api", **env: str) -> ManagedProcess:
    settings = {
        "DIGITS_REDIS_URL": redis_url,
        "DIGITS_API_PORT": str(port),
        "DIGITS_API_HOST": "127.0.0.1",
        "DIGITS_API_WORKERS": "1",  # one process is enough here, and its metrics are exact
        **env,
    }
    process = ManagedProcess(name, [sys.executable, "-m", "api"], settings)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/livez", timeout=1).status_code == 200, 30, "API /livez")
    return process


def group_pids(pgid: int) -> list[int]:
    """Every live process of a process group (a worker's main process and its pool)."""
    return [pid for pid, _, group in process_table() if group == pgid]


def job_ids_by_status(client: redis.Redis, ids: list[str]) -> dict[str, list[str]]:
    """Group job ids by their status in Redis ('missing' for expired or unknown)."""
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(job_key(job_id), "status")
    groups: dict[str, list[str]] = {}
    for job_id, status in zip(ids, pipe.execute(), strict=True):
        groups.setdefault(status.decode() if status else "missing", []).append(job_id)
    return groups
