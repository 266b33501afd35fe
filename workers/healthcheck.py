"""Container healthcheck for a worker: `python -m workers.healthcheck` exits 0 only if *this*
container's worker answers a Celery control ping and one of its pool processes has a model.

The ping proves the main process is connected to the broker and responsive; the heartbeat
(`common.contract.WORKER_HEARTBEAT_KEY`, members `<hostname>:<pid>`) proves a pool process
loaded the model, so a worker whose model failed to load is restarted rather than kept as a
silent consumer. Only the Celery app object is imported (its broker settings must match the
worker's); the model and ONNX Runtime are never loaded here.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

from common import environment

DEFAULT_TIMEOUT_S = 3.0
DEFAULT_STALE_S = 30.0


def node_name(hostname: str) -> str:
    """Celery's default node name for a worker started in this container (`celery@%h`)."""
    return environment.read("WORKER_NODE_NAME", "") or f"celery@{hostname}"


def ping(node: str, timeout: float) -> bool:
    """True if `node` replies to a control ping within `timeout` seconds."""
    from workers.app import celery_app  # deferred: reads DIGITS_REDIS_URL from the environment

    try:
        replies = celery_app.control.ping(destination=[node], timeout=timeout)
    except Exception as exc:  # broker down, auth failure: all mean "unhealthy"
        print(f"unhealthy: ping failed: {exc!r}", file=sys.stderr)
        return False
    return any(node in reply for reply in replies or [])


def model_loaded(hostname: str, stale_s: float) -> bool:
    """True if a process of this host sent a loaded-model heartbeat within `stale_s`."""
    import redis

    from common.contract import WORKER_HEARTBEAT_KEY

    url = environment.read("REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0)
    try:
        beats = client.zrangebyscore(WORKER_HEARTBEAT_KEY, time.time() - stale_s, "+inf")
    except redis.RedisError as exc:
        print(f"unhealthy: heartbeat read failed: {exc!r}", file=sys.stderr)
        return False
    finally:
        client.close()
    names = [bytes(member).decode() for member in beats]  # type: ignore[arg-type]
    return any(name.rsplit(":", 1)[0] == hostname for name in names)


def _give_up(signum: int, frame: object) -> None:
    # kombu may retry a dead broker connection for longer than Docker's probe timeout.
    print("unhealthy: broker did not answer in time", file=sys.stderr)
    os._exit(1)


def main() -> int:
    hostname = socket.gethostname()
    node = node_name(hostname)
    timeout = float(environment.read("WORKER_HEALTHCHECK_TIMEOUT_S", str(DEFAULT_TIMEOUT_S)))
    stale_s = float(environment.read("WORKER_HEALTHCHECK_STALE_S", str(DEFAULT_STALE_S)))
    signal.signal(signal.SIGALRM, _give_up)
    signal.alarm(int(timeout) + 5)
    if not ping(node, timeout):
        print(f"unhealthy: {node} did not answer a ping within {timeout} s", file=sys.stderr)
        return 1
    if not model_loaded(hostname, stale_s):
        print(f"unhealthy: no process on {hostname} with a loaded model", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
