"""`python -m api`: serve the app with uvicorn using the process's settings."""

from __future__ import annotations

import os
import subprocess
import sys

import uvicorn

from api.config import ApiSettings
from api.serving.shedding import DeadlineHttpProtocol
from common.prom import use_multiprocess_dir

ACCEPT_BACKLOG = 4096


def balance_accepts() -> None:
    """Make each API process take one new connection per wake-up (libuv's UV_TCP_SINGLE_ACCEPT).

    The processes share one listening socket. By default libuv accepts until the queue is
    empty, so the first process to wake takes a whole burst of keep-alive connections: at 64
    connections splits of 0/64 were measured, with 15–25 % less throughput than an even split
    (docs/DESIGN.md, "One connection per accept"). The children inherit the environment.
    """
    os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")


def compile_kernels() -> None:
    """Fill the normalisation kernels' disk cache (`common.kernels`) before uvicorn's processes
    start, so that where it is empty (a fresh /tmp) they load it instead of each compiling.

    In a child process: numba and LLVM cost ≈ 55 MB of private memory once loaded, which the
    supervisor, serving nothing, should not keep.
    """
    code = "from common import kernels; kernels.warm_up()"
    subprocess.run([sys.executable, "-c", code], check=True)


def main() -> None:
    settings = ApiSettings()
    # Before uvicorn starts its processes: they must all write metrics to one fresh place
    # (with one process and no PROMETHEUS_MULTIPROC_DIR, the in-memory registry is exact).
    use_multiprocess_dir("api", private_if_unset=settings.api_workers > 1, clear=True)
    balance_accepts()
    compile_kernels()
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        loop="uvloop",
        http=DeadlineHttpProtocol,  # httptools, plus true arrival times and cheap shedding
        access_log=False,
        # NOTE: the kernel caps this at net.core.somaxconn. A full accept queue drops SYNs,
        # which clients resend only after 1 s: a hidden second of latency. Requests that
        # waited in the queue are shed cheaply instead (api/serving/shedding.py).
        backlog=ACCEPT_BACKLOG,
        timeout_graceful_shutdown=10,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
