"""Sampling profiles of the API and workers under load (py-spy), summarised as shares.

py-spy records only threads that are running (idle waits are left out), so the shares say
where the busy CPU goes. Categories are matched on any frame of a stack (inclusive time).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

API_CATEGORIES: dict[str, str] = {
    "HTTP server + FastAPI/Starlette stack": r"uvicorn/|httptools|starlette/|fastapi/",
    "  query-string parsing (QueryParams)": r"QueryParams\.__init__",
    "request body -> images (decode+normalise)": r"api/serving/inputs\.py",
    "  Pillow decode": r"common/imaging\.py.*\b(decode|_to_gray)\b|PIL/",
    "  normalise": r"\bnormalise \(",
    "Celery send_task (kombu publish, sender thread)": r"\bsend_task \(",
    "  kombu/json serialisation": r"kombu/serialization|json/encoder",
    "Redis client (redis-py, all)": r"redis/",
    "job store (create/get)": r"api/serving/jobs\.py",
    "Prometheus client (metrics)": r"prometheus_client",
    "logging": r"logging/|common/logs\.py",
}
WORKER_CATEGORIES: dict[str, str] = {
    "Celery parent: consumer loop (receive, dispatch to pool)": r"Evloop\.start|asynloop",
    "  task events (worker_send_task_events)": r"celery/events/dispatcher",
    "  parent: logging of received tasks": r"strategy\.py.*task_message_handler.*logging/",
    "Celery child: task body (BatchRunner.run)": r"BatchRunner\.run",
    "  ONNX inference": r"workers/model\.py.*predict|onnxruntime",
    "  build answers": r"workers/inference\.py.*(_outcome|prediction)",
    "  result write (Lua FINISH + PUBLISH)": r"workers/results\.py",
    "  mark running (Lua)": r"mark_running",
    "  message decode (PredictMessage)": r"from_dict|decode_images",
    "Redis client (redis-py, all)": r"redis/",
    "kombu (all)": r"kombu/",
    "logging (all)": r"logging/|common/logs\.py",
}


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def start(
    pid: int, seconds: float, out: Path, rate: int = 200, gil: bool = False
) -> subprocess.Popen | None:
    """Start recording `pid` and its children for `seconds`; None if py-spy is missing.

    `gil`: only samples holding the GIL; on a shared, overloaded machine this keeps threads
    that are runnable but not scheduled out of pure-Python processes' profiles.
    """
    binary = py_spy()
    if binary is None:
        return None
    argv = [binary, "record", "--pid", str(pid), "--subprocesses", "--duration"]
    argv += [str(int(seconds)), "--rate", str(rate), "--format", "raw", "-o", str(out)]
    argv += ["--nonblocking", *(["--gil"] if gil else [])]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame_name(frame: str) -> str:
    """`func (path/to/file.py:123)` -> `func (file.py)`: self time per function, not line."""
    match = re.match(r"(.*) \((?:.*/)?([^/:]+)(?::\d+)?\)$", frame.strip())
    return f"{match.group(1)} ({match.group(2)})" if match else frame.strip()


def summarise(path: Path, categories: dict[str, str], top: int = 12) -> dict:
    """Collapsed stacks -> total samples, category shares, top self-time functions."""
    stacks: list[tuple[str, int]] = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack, int(count)))
    total = sum(count for _, count in stacks)
    if total == 0:
        return {"samples": 0, "categories": {}, "top_self": []}
    shares = {}
    for name, pattern in categories.items():
        regex = re.compile(pattern)
        hits = sum(count for stack, count in stacks if regex.search(stack))
        if hits:
            shares[name] = round(100 * hits / total, 1)
    leaves: Counter[str] = Counter()
    for stack, count in stacks:
        leaves[_frame_name(stack.split(";")[-1])] += count
    top_self = [(name, round(100 * count / total, 1)) for name, count in leaves.most_common(top)]
    return {"samples": total, "categories": shares, "top_self": top_self}
