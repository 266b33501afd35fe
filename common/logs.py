"""Structured logs: one JSON object per line, with `job_id` whenever a line is about a job."""

from __future__ import annotations

import logging
import sys

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Anything passed with `extra={...}` (job_id, job_ids, batch_size, ...) is kept.
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


CHATTY_LOGGERS = ("celery.worker.strategy", "celery.app.trace")
"""One INFO line per message each, the first with the whole payload: quiet unless DEBUG."""


def configure_logging(service: str, level: str = "INFO", json_lines: bool = True) -> None:
    # NOTE: sys.__stderr__: Celery swaps sys.stderr for a logging proxy in pool processes,
    # and a handler writing to that proxy would feed its own records back to itself.
    handler = logging.StreamHandler(sys.__stderr__)
    if json_lines:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level.upper() != "DEBUG":
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
