"""`make run` supervises: a worker, API or Flower killed with SIGKILL comes back by itself, a
dead API process's in-flight gauge is dropped, and SIGTERM still stops everything."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from common.contract import WORKER_HEARTBEAT_KEY
from harness.processes import LOG_DIR, ROOT, ManagedProcess, RedisServer, free_port, wait_until
from tests.reliability.conftest import batch_body
from workers.shutdown import process_table

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class RunSh:
    process: ManagedProcess
    url: str
    flower_url: str
    run_dir: Path

    def leader(self, command: str) -> int | None:
        """The live service run.sh started whose command line contains `command`."""
        mine = self.descendants()
        for pid, _, group in process_table():
            if pid == group and pid in mine and command in cmdline(pid):
                return pid
        return None

    def descendants(self) -> set[int]:
        table = process_table()
        found, frontier = set(), {self.process.pid}
        while frontier:
            frontier = {pid for pid, ppid, _ in table if ppid in frontier} - found
            found |= frontier
        # services run in sessions of their own, but are still run.sh's descendants
        return found

    def in_flight(self) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        match = re.search(r"^digits_http_requests_in_flight (\S+)$", text, re.M)
        return float(match.group(1)) if match else -1.0


@pytest.fixture()
def run_sh() -> Iterator[RunSh]:
    port, flower = free_port(), free_port()
    run_dir = LOG_DIR.parent / f"run-sh-{port}"
    env = {
        # No Redis there: run.sh starts its own.
        "DIGITS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "REDIS_MAXMEMORY": "256mb",
        "DIGITS_API_PORT": str(port),
        "DIGITS_API_WORKERS": "2",
        "FLOWER_PORT": str(flower),
        "PROMETHEUS_PORT": str(free_port()),  # its own Prometheus, never the machine's 9090
        "DIGITS_WORKER_METRICS_PORT": str(free_port()),
        "DIGITS_WORKER_CONCURRENCY": "1",
        "DIGITS_HEARTBEAT_INTERVAL_S": "0.5",
        "DIGITS_SYNC_WAIT_MAX_S": "30",
        "RUN_DIR": str(run_dir),
        "RESTART_MAX_DELAY_S": "2",
    }
    process = ManagedProcess(f"run-sh-{port}", [str(ROOT / "scripts" / "run.sh")], env)
    stack = RunSh(process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{flower}", run_dir)
    try:
        wait_until(lambda: ready(stack.url), 180, "run.sh's service to be ready", 0.5)
        yield stack
    finally:
        left = stack.descendants()
        process.stop(timeout=40)
        for pid in left:  # nothing may outlive a failed test either
            if cmdline(pid):
                os.kill(pid, signal.SIGKILL)


def ready(url: str) -> bool:
    return httpx.get(f"{url}/readyz?workers=1", timeout=2).status_code == 200


def answers(url: str, body: dict) -> bool:
    return httpx.post(f"{url}/v1/predict", json=body, timeout=10).status_code == 200


def test_run_sh_restarts_killed_services_and_stops_cleanly_on_sigterm(run_sh, digits):
    body = batch_body(digits[0][:1])
    assert answers(run_sh.url, body)

    # A worker's main process killed outright: its pool goes with its group, a new one starts.
    worker = run_sh.leader("-m workers")
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: (w := run_sh.leader("-m workers")) and w != worker, 30, "a new worker")
    wait_until(lambda: answers(run_sh.url, body), 120, "answers after the worker kill", 0.5)

    # A uvicorn process killed mid-request: its "in flight" must not stay counted forever.
    api = run_sh.leader("-m api")
    uvicorn = [pid for pid, ppid, _ in process_table() if ppid == api and "spawn" in cmdline(pid)]
    new_worker = run_sh.leader("-m workers")
    os.killpg(new_worker, signal.SIGSTOP)  # requests now wait inside the API
    try:
        stuck = threading.Thread(target=lambda: _ignore_errors(run_sh.url, body), daemon=True)
        stuck.start()
        # the waiting request plus the scrape itself
        wait_until(lambda: run_sh.in_flight() >= 2, 20, "a request in flight", 0.2)
        for pid in uvicorn:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.killpg(new_worker, signal.SIGCONT)
    wait_until(lambda: run_sh.in_flight() == 1, 60, "the dead process's gauge dropped", 0.5)
    wait_until(lambda: answers(run_sh.url, body), 60, "answers after the uvicorn kill", 0.5)

    # The API's main process, Flower and Prometheus killed outright: all come back.
    flower = run_sh.leader(" flower ")
    prometheus = run_sh.leader("--storage.tsdb.path=")
    os.kill(api, signal.SIGKILL)
    os.kill(flower, signal.SIGKILL)
    if prometheus:  # absent only where no prometheus binary could be installed
        os.kill(prometheus, signal.SIGKILL)
    wait_until(lambda: answers(run_sh.url, body), 120, "answers after the API kill", 0.5)
    wait_until(
        lambda: httpx.get(run_sh.flower_url, timeout=2).status_code == 401, 120, "Flower back"
    )
    log = run_sh.process.log_path.read_text(errors="replace")
    for name in ("worker", "api", "flower") + (("prometheus",) if prometheus else ()):
        assert re.search(rf"{name} exited \(status 137\).*restart", log), log[-2000:]

    # SIGTERM: every service stops (gracefully), nothing is left behind.
    services = run_sh.descendants()
    run_sh.process.terminate()
    assert run_sh.process.proc.wait(60) == 0, run_sh.process.log_tail()
    wait_until(lambda: not any(cmdline(pid) for pid in services), 30, "every service stopped")


def _ignore_errors(url: str, body: dict) -> None:
    with contextlib.suppress(httpx.HTTPError):  # its process is killed under it
        httpx.post(f"{url}/v1/predict", json=body, timeout=60)


def test_a_taken_port_is_a_clear_failure_before_anything_starts(tmp_path):
    """On a shared host another service's DIGITS_API_PORT used to answer run.sh's readiness probe:
    the success banner, then this API exited (issue 17)."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "DIGITS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "DIGITS_API_PORT": str(port),
            "DIGITS_WORKER_METRICS_PORT": str(free_port()),
            "PROMETHEUS_PORT": str(free_port()),
            "FLOWER": "0",
            "RUN_DIR": str(tmp_path),
        }
        result = subprocess.run(
            [str(ROOT / "scripts" / "run.sh")], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"port {port} is taken (DIGITS_API_PORT)" in result.stderr
    assert "API        http" not in result.stdout  # no banner
    assert (
        not (tmp_path / "log" / "api.log").exists()
        or "Uvicorn" not in (tmp_path / "log" / "api.log").read_text()
    )


def test_a_namespace_another_stack_serves_is_a_clear_failure(tmp_path):
    """A Redis that already answers may hold another stack: run.sh refuses to join its queues
    and names the way out (DIGITS_NAMESPACE), before anything starts."""
    server = RedisServer()
    try:
        server.client().zadd(WORKER_HEARTBEAT_KEY, {"elsewhere:1": time.time()})  # live there
        env = {
            **os.environ,
            "DIGITS_REDIS_URL": server.url,
            "DIGITS_API_PORT": str(free_port()),
            "DIGITS_WORKER_METRICS_PORT": str(free_port()),
            "PROMETHEUS_PORT": str(free_port()),
            "FLOWER": "0",
            "RUN_DIR": str(tmp_path),
        }
        env.pop("DIGITS_NAMESPACE", None)
        result = subprocess.run(
            [str(ROOT / "scripts" / "run.sh")], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        server.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 live worker process(es) already use namespace 'digits'" in result.stderr
    assert "DIGITS_NAMESPACE=mine make run" in result.stderr
    assert "API        http" not in result.stdout  # no banner
