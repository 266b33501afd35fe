"""Hot reload: follow the alias a worker serves and switch models between batches.

Each pool process watches `models/<name>/aliases.json` (one `stat` per interval; the file is
replaced by one rename whenever an alias moves, so its inode changes). When the served alias
names another version, that version is loaded and warmed up in this background thread while
the old one keeps serving; then `on_switch` hands it over, and the next batch runs on it
(`BatchRunner.run` takes its model once per batch, so a batch never mixes versions and its
answers name the version that computed them). A version that fails to load is logged and
the old one keeps serving until the alias moves again. Rolling back is moving the alias back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from common import registry
from workers.model import DigitModel

log = logging.getLogger(__name__)

Loader = Callable[[str], DigitModel]
"""Load and warm up an explicit version number."""


class AliasWatcher:
    def __init__(
        self,
        models_dir: str | Path,
        name: str,
        alias: str,
        current_version: str | None,
        *,
        load: Loader,
        on_switch: Callable[[DigitModel], None],
        interval_s: float,
        on_missing: Callable[[], None] | None = None,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.name = name
        self.alias = alias
        self.current_version = current_version
        self._load = load
        self._on_switch = on_switch
        self._on_missing = on_missing
        """Called when the alias names no version (a canary alias removed); None: keep serving."""
        self._interval_s = interval_s
        self._path = self.models_dir / name / registry.ALIASES_FILE
        self._seen = self._signature()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-reload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def check(self) -> DigitModel | None:
        """One look at aliases.json; the model switched to, or None."""
        signature = self._signature()
        if signature == self._seen:
            return None
        self._seen = signature
        try:
            version = registry.resolve(self.models_dir, self.name, self.alias).name
        except registry.RegistryError as exc:
            if self._on_missing is not None and self.current_version is not None:
                self.current_version = None
                self._on_missing()
                log.info("model alias gone", extra={"model": self.name, "alias": self.alias})
                return None
            log.error("model alias unreadable, serving version %s: %s", self.current_version, exc)
            return None
        if version == self.current_version:
            return None
        try:
            model = self._load(version)
        except Exception:
            log.exception(
                "model version %s failed to load; still serving %s", version, self.current_version
            )
            return None
        previous, self.current_version = self.current_version, version
        self._on_switch(model)
        log.info(
            "model switched",
            extra={"model": self.name, "alias": self.alias, "from": previous, "to": version},
        )
        return model

    def _run(self) -> None:
        # NOTE: Linux nice values are per thread: loading a new version yields the core to
        # the thread serving batches with the old one.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while not self._stopped.wait(self._interval_s):
            try:
                self.check()
            except Exception:  # the watcher must outlive any surprise; serving goes on
                log.exception("model reload check failed")
