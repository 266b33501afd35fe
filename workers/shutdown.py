"""Bounds a warm shutdown: pool processes still alive after the grace period are stopped.

Measured here: about one warm shutdown in three, Celery's prefork pool finished its work but
one idle pool process never received the pool's stop sentinel, and the main process waited
on it forever (py-spy: `Pool.join` in the parent, the child idle in `Worker.workloop`). An
orchestrator then SIGKILLs the container after its grace period. Here the main process does
it itself, sooner and only to its own children: a batch takes milliseconds, so a process
still alive `grace_s` after shutdown began is idle or stuck, and anything it held is
unacknowledged, so it is redelivered (acks_late) or re-sent by the API's sweeper.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


def process_table() -> list[tuple[int, int, int]]:
    """(pid, ppid, process group) of every live process, read from /proc."""
    table = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":  # zombies are already gone
            table.append((int(entry.name), int(fields[1]), int(fields[2])))
    return table


def child_pids(parent: int) -> list[int]:
    return [pid for pid, ppid, _ in process_table() if ppid == parent]


def stop_children_after(grace_s: float) -> threading.Thread:
    """From the main process, when shutdown starts: SIGTERM, then SIGKILL, what is left."""
    parent = os.getpid()

    def reap() -> None:
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 3.0)):
            time.sleep(wait_s)
            for pid in child_pids(parent):
                log.warning("pool process %s still alive after shutdown began: %s", pid, sig.name)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    thread = threading.Thread(target=reap, name="shutdown-reaper", daemon=True)
    thread.start()
    return thread
