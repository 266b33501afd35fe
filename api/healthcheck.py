"""Container healthcheck for the API: `python -m api.healthcheck` exits 0 if `/livez` answers 200.

Stdlib only (and `common.environment`, stdlib too), no import of the `api` package's
modules, so the probe stays cheap (Docker runs it every few seconds) and cannot fail
because of an application import error that the server itself survived.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from common import environment

TIMEOUT_S = 2.0


def livez_url() -> str:
    """The liveness URL of the API process in this container (always loopback)."""
    return f"http://127.0.0.1:{environment.read('API_PORT', '8000')}/livez"


def check(url: str, timeout: float = TIMEOUT_S) -> bool:
    """True if `url` answers HTTP 200 within `timeout` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main() -> int:
    url = livez_url()
    if check(url):
        return 0
    print(f"unhealthy: {url} did not answer 200 within {TIMEOUT_S} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
