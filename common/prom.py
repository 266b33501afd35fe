"""prometheus-client helpers both processes need; this module never imports prometheus_client.

`use_multiprocess_dir` must run before this process creates its first metric: the client
picks its value storage (in memory or mmap files) at import time, and is switched here if
something imported it earlier.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import tempfile
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"


def _remove_if_owner(path: str, owner: int) -> None:
    """At exit: the process that made a private metrics directory removes it (not its forks)."""
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def use_multiprocess_dir(service: str, *, private_if_unset: bool, clear: bool = False) -> str:
    """Point this process (and its children) at `$PROMETHEUS_MULTIPROC_DIR/<service>`.

    One sub-directory per service: `make run` gives API, workers and Flower one base
    directory, and each `/metrics` must show its own processes only. With the variable unset,
    either a private temporary directory (a forking server: its children must share it) or
    "" (a single process: the ordinary in-memory registry is exact). `clear` is for the
    process that starts a service: files left by a previous run would be summed in.
    """
    base = os.environ.get(ENV, "")
    if not base:
        if not private_if_unset:
            return ""
        base = tempfile.mkdtemp(prefix=f"digits-{service}-metrics-")
        owner = os.getpid()
        atexit.register(_remove_if_owner, base, owner)
    path = base if os.path.basename(base.rstrip("/")) == service else os.path.join(base, service)
    os.makedirs(path, exist_ok=True)
    if clear:
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))
    os.environ[ENV] = path
    values: Any = sys.modules.get("prometheus_client.values")  # ValueClass: not in its stubs
    if values is not None and values.ValueClass is values.MutexValue:
        # Imported too early (Celery's CLI loads the Flower plugin, which imports it): switch
        # the storage now, before this process creates any metric of ours.
        values.ValueClass = values.get_value_class()
    return path


_LIVE_FILE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")


def forget_dead_processes(path: str) -> list[int]:
    """`mark_process_dead` for every process of `path` that died without saying so.

    A process killed with SIGKILL (a pool process, a uvicorn worker) leaves its `live*` gauge
    files behind, and they are summed in forever: a dead worker still "up", a dead API
    process's request still "in flight". Called before each scrape; returns the pids dropped.
    """
    from prometheus_client import multiprocess

    dead = []
    for name in os.listdir(path):
        match = _LIVE_FILE.match(name)
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), path)
            dead.append(int(match.group(1)))
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LiveCollector:
    """The multiprocess sum of `path`, after forgetting the processes that died."""

    def __init__(self, path: str) -> None:
        from prometheus_client import multiprocess

        self._path = path
        self._inner = multiprocess.MultiProcessCollector(None, path)

    def collect(self):
        forget_dead_processes(self._path)
        return self._inner.collect()
