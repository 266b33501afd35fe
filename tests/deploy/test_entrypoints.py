"""Every command the containers run, run directly on this host: the same modules and the same
argument lists as docker-compose.yml (read from it), not copies.

API and worker entry points start, pass their own healthchecks, and stop on SIGTERM inside the
compose grace period; the healthchecks fail when there is nothing healthy to find; Redis accepts
the compose flags and its healthcheck needs the password; Flower enforces basic auth.
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from harness.processes import (
    ManagedProcess,
    RedisServer,
    free_port,
    start_api,
    start_worker,
    wait_until,
)
from tests.deploy.support import (
    ROOT,
    as_argv,
    compose_resolved,
    read_env_file,
    require_tool,
    venv_env,
)

SERVICES = compose_resolved()["services"]


def grace_seconds(service: str) -> float:
    value = SERVICES[service]["stop_grace_period"]
    assert value.endswith("s"), value
    return float(value[:-1])


def run_probe(service: str, timeout: float = 20, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the service's compose healthcheck command (`CMD ...`) exactly, with this env."""
    test = SERVICES[service]["healthcheck"]["test"]
    assert test[0] == "CMD"
    argv = [sys.executable if test[1] == "python" else test[1], *test[2:]]
    return subprocess.run(
        argv, cwd=ROOT, env=venv_env(**env), capture_output=True, text=True, timeout=timeout
    )


class _Livez(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/livez" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def fake_api() -> Iterator[tuple[int, type[_Livez]]]:
    handler = type("Handler", (_Livez,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()


def test_api_probe_fails_when_nothing_listens() -> None:
    started = time.monotonic()
    result = run_probe("api", DIGITS_API_PORT=str(free_port()))
    assert result.returncode == 1
    assert "did not answer 200" in result.stderr
    assert time.monotonic() - started < 10


def test_api_probe_follows_livez_status(fake_api: tuple[int, type[_Livez]]) -> None:
    port, handler = fake_api
    assert run_probe("api", DIGITS_API_PORT=str(port)).returncode == 0
    handler.status = 503
    assert run_probe("api", DIGITS_API_PORT=str(port)).returncode == 1


@pytest.mark.integration
def test_api_entrypoint_is_healthy_then_stops_on_sigterm_within_grace(
    redis_server: RedisServer,
) -> None:
    port = free_port()
    process = start_api(redis_server.url, port, name="deploy-api", DIGITS_API_WORKERS="2")
    try:
        result = run_probe("api", DIGITS_API_PORT=str(port))
        assert result.returncode == 0, result.stderr
        started = time.monotonic()
        code = stop_within_grace(process, "api")
        assert time.monotonic() - started <= 10, "uvicorn must drain within 10 s"
        assert code == 0, process.log_tail()
    finally:
        process.stop()
    assert run_probe("api", DIGITS_API_PORT=str(port)).returncode == 1


@pytest.fixture()
def empty_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.mark.integration
def test_worker_probe_fails_without_a_worker(empty_redis: RedisServer) -> None:
    result = run_probe(
        "worker", DIGITS_REDIS_URL=empty_redis.url, DIGITS_WORKER_HEALTHCHECK_TIMEOUT_S="1"
    )
    assert result.returncode == 1
    assert "did not answer a ping" in result.stderr


def test_worker_probe_fails_fast_when_redis_is_down() -> None:
    started = time.monotonic()
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = run_probe("worker", DIGITS_REDIS_URL=url, DIGITS_WORKER_HEALTHCHECK_TIMEOUT_S="1")
    assert result.returncode == 1
    assert "unhealthy" in result.stderr
    assert time.monotonic() - started < 15  # Docker's probe timeout for workers is 10 s + slack


def test_worker_probe_loads_no_model() -> None:
    """The probe runs every 15 s in each container: it must not import ONNX Runtime."""
    code = (
        "import sys, runpy\n"
        "sys.argv = ['workers.healthcheck']\n"
        "try:\n    runpy.run_module('workers.healthcheck', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('onnxruntime' in sys.modules)\n"
    )
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=venv_env(DIGITS_REDIS_URL=url, DIGITS_WORKER_HEALTHCHECK_TIMEOUT_S="1"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr


def stop_within_grace(process: ManagedProcess, service: str) -> int:
    """SIGTERM, then the exit code, which must come before compose would SIGKILL.

    Like Docker (and tini), the signal goes to the main process only, not its group:
    the entry point itself must pass the shutdown on to uvicorn workers or the Celery pool.
    """
    os.kill(process.pid, signal.SIGTERM)
    try:
        return process.proc.wait(timeout=grace_seconds(service))
    except subprocess.TimeoutExpired:
        pytest.fail(f"{service} ignored SIGTERM for {grace_seconds(service)} s")


@pytest.mark.integration
@pytest.mark.slow
def test_worker_probe_fails_while_no_process_has_a_model(
    empty_redis: RedisServer, tmp_path: Path
) -> None:
    """The ping alone would pass: the model heartbeat is what catches a broken model dir."""
    process = start_worker(
        empty_redis.url, name="deploy-worker-nomodel", DIGITS_MODELS_DIR=str(tmp_path)
    )
    try:
        wait_until(
            lambda: (
                "with a loaded model"
                in run_probe("worker", DIGITS_REDIS_URL=empty_redis.url).stderr
            ),
            60,
            "the worker to answer pings without a model",
            interval=0.5,
        )
        stop_within_grace(process, "worker")
    finally:
        process.stop()


MODEL_ALIASES = ROOT / "models" / "mnist_cnn" / "aliases.json"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(not MODEL_ALIASES.exists(), reason="no trained model in models/ yet")
def test_worker_entrypoint_is_healthy_then_warm_shuts_down(empty_redis: RedisServer) -> None:
    process = start_worker(empty_redis.url, name="deploy-worker", DIGITS_WORKER_CONCURRENCY="1")
    try:
        wait_until(
            lambda: run_probe("worker", DIGITS_REDIS_URL=empty_redis.url).returncode == 0,
            60,
            "worker healthcheck to pass",
            interval=0.5,
        )
        assert stop_within_grace(process, "worker") == 0, process.log_tail()
    finally:
        process.stop()
    result = run_probe(
        "worker", DIGITS_REDIS_URL=empty_redis.url, DIGITS_WORKER_HEALTHCHECK_TIMEOUT_S="1"
    )
    assert result.returncode == 1


def redis_argv(password: str, port: int, data_dir: Path) -> list[str]:
    """The compose Redis command, interpolated, plus a private port/dir for this test."""
    env = {**read_env_file(), "REDIS_PASSWORD": password}
    command = compose_resolved(env)["services"]["redis"]["command"]
    binary = require_tool("redis-server", "apt-get install -y redis-server")
    private = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir)]
    return [binary, *as_argv(command)[1:], *private]


def test_redis_runs_with_the_compose_flags_and_its_probe_needs_the_password(
    tmp_path: Path,
) -> None:
    require_tool("redis-cli", "apt-get install -y redis-tools")
    port = free_port()
    process = ManagedProcess(f"deploy-redis-{port}", redis_argv("s3cret", port, tmp_path), {})
    try:
        client = redis.Redis(port=port, password="s3cret", socket_timeout=2)
        wait_until(client.ping, 10, "compose-configured redis")
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, socket_timeout=2).ping()

        test = SERVICES["redis"]["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL"
        # The one change: this Redis is not on 6379 (that one belongs to the machine).
        shell = test[1].replace("redis-cli", f"redis-cli -p {port}")
        good = subprocess.run(["sh", "-c", shell], env=venv_env(REDISCLI_AUTH="s3cret"))
        bad = subprocess.run(["sh", "-c", shell], env=venv_env(REDISCLI_AUTH="wrong"))
        assert (good.returncode, bad.returncode) == (0, 1)
    finally:
        process.stop()


@pytest.mark.integration
def test_flower_command_serves_behind_basic_auth(empty_redis: RedisServer) -> None:
    env = read_env_file()
    flower = compose_resolved(env)["services"]["flower"]
    argv = as_argv(flower["command"])
    port = free_port()
    argv = [f"--port={port}" if arg == "--port=5555" else arg for arg in argv]
    binary = str(Path(sys.executable).parent / "celery")
    process = ManagedProcess(
        "deploy-flower",
        [binary, *argv[1:], "--address=127.0.0.1"],
        {
            "DIGITS_REDIS_URL": empty_redis.url,
            "PYTHONPATH": str(ROOT),
            # From the environment, as in compose: the password is not in argv.
            "FLOWER_BASIC_AUTH": flower["environment"]["FLOWER_BASIC_AUTH"],
        },
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: httpx.get(f"{url}/healthcheck", timeout=1).status_code == 200, 30, "flower"
        )
        assert httpx.get(f"{url}/", timeout=5).status_code == 401
        auth = (env["FLOWER_USER"], env["FLOWER_PASSWORD"])
        assert httpx.get(f"{url}/", auth=auth, timeout=5).status_code == 200
        assert httpx.get(f"{url}/", auth=(auth[0], "wrong"), timeout=5).status_code == 401

        test = SERVICES["flower"]["healthcheck"]["test"]
        probe = [sys.executable, *(arg.replace(":5555/", f":{port}/") for arg in test[2:])]
        assert subprocess.run(probe, timeout=10).returncode == 0
    finally:
        process.stop()
