"""`python -m workers`: start a Celery worker with the flags this service relies on."""

from __future__ import annotations

import logging
import sys

from common.contract import QUEUE_BULK, QUEUE_INTERACTIVE
from common.decoding import DirectoryError, PostcodeDirectory
from common.logs import configure_logging
from workers.app import celery_app, settings


def worker_argv() -> list[str]:
    argv = [
        "worker",
        # Interactive first: with queue_order_strategy=priority the order here is the priority.
        f"--queues={QUEUE_INTERACTIVE},{QUEUE_BULK}",
        "--pool=prefork",
        "--prefetch-multiplier=1",
        "-O",
        "fair",
        f"--loglevel={settings.log_level}",
        "--without-gossip",
        "--without-mingle",
    ]
    if settings.worker_autoscale:
        argv.append(f"--autoscale={settings.worker_autoscale}")
    else:
        argv.append(f"--concurrency={settings.worker_concurrency}")
    return argv


def check_directory(path: str) -> None:
    """Fail at start-up, with the file and line, rather than in every pool process later."""
    if not path:
        return
    try:
        directory = PostcodeDirectory.load(path)
    except DirectoryError as exc:
        logging.getLogger("workers").error("invalid DIGITS_POSTCODE_DIRECTORY: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    lengths = {n: len(directory.codes[n]) for n in directory.lengths}
    logging.getLogger("workers").info(
        "postcode directory checked", extra={"path": path, "codes_by_length": lengths}
    )


def main() -> None:
    configure_logging("worker", settings.log_level, settings.log_json)
    check_directory(settings.postcode_directory)
    celery_app.worker_main(worker_argv())


if __name__ == "__main__":
    main()
