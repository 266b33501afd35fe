"""`python -m api`: serve the app with uvicorn using the process's settings."""

from __future__ import annotations

import uvicorn

from api.config import ApiSettings
from common.prom import use_multiprocess_dir


def main() -> None:
    settings = ApiSettings()
    # Before uvicorn starts its processes: they must all write metrics to one fresh place
    # (with one process and no PROMETHEUS_MULTIPROC_DIR, the in-memory registry is exact).
    use_multiprocess_dir("api", private_if_unset=settings.api_workers > 1, clear=True)
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        timeout_graceful_shutdown=10,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
