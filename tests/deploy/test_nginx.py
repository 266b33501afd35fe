"""deploy/nginx/default.conf: nginx accepts it, and it proxies to the API, adds a request id,
lets API-sized uploads through and keeps /metrics private."""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from harness.processes import ManagedProcess, free_port, wait_until
from tests.deploy.support import SITE, main_conf, nginx_args, nginx_site


def test_nginx_accepts_the_config_and_rejects_a_broken_one(tmp_path: Path) -> None:
    args = [*nginx_args(tmp_path, main_conf(tmp_path, SITE)), "-t", "-q"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr

    broken = tmp_path / "broken.conf"
    broken.write_text(SITE.read_text().replace("proxy_pass $api_upstream;", "proxy_pass;"))
    args = [*nginx_args(tmp_path, main_conf(tmp_path, broken)), "-t", "-q"]
    assert subprocess.run(args, capture_output=True, timeout=30).returncode != 0


class Upstream(http.server.BaseHTTPRequestHandler):
    """Stands in for an API replica and records what nginx forwarded."""

    seen: ClassVar[list[tuple[str, str, dict[str, str], int]]] = []

    def _answer(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(size)
        self.seen.append((self.command, self.path, dict(self.headers), size))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def replica(kind: type[Upstream]) -> Iterator[tuple[int, type[Upstream]]]:
    """A stand-in replica of `kind` on a free port, with a fresh record of what it saw."""
    handler = type(f"{kind.__name__}Recorder", (kind,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def upstream() -> Iterator[tuple[int, type[Upstream]]]:
    with replica(Upstream) as running:
        yield running


def start_nginx(tmp_path: Path, swaps: dict[str, str]) -> tuple[ManagedProcess, str]:
    """deploy/nginx/default.conf with `swaps` applied (each must occur once) and `listen`
    moved to a free loopback port; returns the running nginx and its URL once it answers."""
    port = free_port()
    site = nginx_site(tmp_path, f"127.0.0.1:{port}", swaps)
    args = [*nginx_args(tmp_path, main_conf(tmp_path, site)), "-g", "daemon off;"]
    process = ManagedProcess(f"deploy-nginx-{port}", args, {})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/nginx-health", timeout=1).status_code == 200, 15, "nginx"
        )
    except BaseException:
        process.stop()
        raise
    return process, url


def test_nginx_proxies_to_the_api_and_hides_metrics(
    tmp_path: Path, upstream: tuple[int, type[Upstream]]
) -> None:
    upstream_port, recorder = upstream
    # The two values that only make sense inside compose: the port and the `api` DNS name.
    upstream_line = f"set $api_upstream http://127.0.0.1:{upstream_port};"
    process, url = start_nginx(tmp_path, {"set $api_upstream http://api:8000;": upstream_line})
    try:
        assert httpx.get(f"{url}/v1/jobs/abc", timeout=5).text == "ok"
        method, path, headers, _ = recorder.seen[-1]
        assert (method, path) == ("GET", "/v1/jobs/abc")
        assert len(headers["X-Request-ID"]) == 32
        assert headers["X-Forwarded-For"] == "127.0.0.1"

        body = b"\0" * (5 * 1024 * 1024)  # above nginx's 1 MB default, below DIGITS_MAX_BODY_BYTES
        assert httpx.post(f"{url}/v1/predict", content=body, timeout=10).status_code == 200
        assert recorder.seen[-1][3] == len(body)

        count = len(recorder.seen)
        assert httpx.get(f"{url}/metrics", timeout=5).status_code == 404
        assert len(recorder.seen) == count, "/metrics must not reach the API through nginx"
    finally:
        process.stop()


class Refusing(Upstream):
    """A replica that lost Redis: every POST gets the API's 503."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.path, dict(self.headers), 0))
        body = b'{"error":{"code":"queue_unavailable","message":"retry"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_post_refused_by_one_replica_is_retried_on_the_next(
    tmp_path: Path, upstream: tuple[int, type[Upstream]]
) -> None:
    healthy_port, healthy = upstream
    with replica(Refusing) as (refusing_port, refusing):
        # Two replicas, as Docker's DNS gives `api` under `--scale api=2`.
        group = f"upstream replicas {{ server 127.0.0.1:{refusing_port}; "
        group += f"server 127.0.0.1:{healthy_port}; }}\n"
        swaps = {
            "set $api_upstream http://api:8000;": "set $api_upstream http://replicas;",
            "server {\n": group + "server {\n",
        }
        process, url = start_nginx(tmp_path, swaps)
        try:
            posts = [httpx.post(f"{url}/v1/predict", content=b"x", timeout=5) for _ in range(6)]
            assert [r.status_code for r in posts] == [200] * 6
            # The first POST it refused was retried on the other; nginx then leaves it out
            # for fail_timeout (10 s, max_fails=1): a passive health check, as the issue asked.
            assert len(refusing.seen) == 1, refusing.seen
            assert len(healthy.seen) == 6
        finally:
            process.stop()
