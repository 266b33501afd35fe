"""CPU use per component: CPU seconds of a process tree divided by wall-clock seconds.

1.0 means one core fully busy. Children (uvicorn workers, Celery prefork processes) are
counted with their root process.
"""

from __future__ import annotations

import time

import psutil


def _tree_cpu(pid: int) -> dict[int, float]:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    seconds = {}
    for proc in procs:
        try:
            times = proc.cpu_times()
            seconds[proc.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return seconds


class CpuMeter:
    """`start()` then `stop()` -> {component: cores used on average in between}."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._before: dict[str, dict[int, float]] = {}
        self._t0 = 0.0

    def start(self) -> None:
        self._before = {name: _tree_cpu(pid) for name, pid in self._pids.items()}
        self._t0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._t0
        usage = {}
        for name, pid in self._pids.items():
            before, after = self._before.get(name, {}), _tree_cpu(pid)
            spent = sum(after[p] - before.get(p, 0.0) for p in after)
            usage[name] = round(spent / wall, 3) if wall > 0 else 0.0
        return usage
