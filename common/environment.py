"""The service's environment variables: one prefix, `DIGITS_`, so they cannot collide with
another program's `REDIS_URL` or `LOG_LEVEL` on a shared host (issue 17).

The names from before the prefix (`REDIS_URL`, `API_PORT`, ...) still work for a deprecation
period: read only while the prefixed name is unset, with a warning that names the new one.
The settings classes read them through `common.settings` (the same rules); the few programs
that read a variable without a settings class (healthchecks, the registry path, training's
CLI) call `read` here.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Mapping

PREFIX = "DIGITS_"

_logged: set[str] = set()


def prefixed(name: str) -> str:
    return PREFIX + name.upper()


def legacy_value(
    name: str, old_names: Iterable[str], environ: Mapping[str, str] | None = None
) -> str | None:
    """The value of the first old name that is set, while `DIGITS_<NAME>` is not; warns."""
    env = {
        key.upper(): value for key, value in (os.environ if environ is None else environ).items()
    }
    new = prefixed(name)
    if new in env:
        return None
    for old in old_names:
        if old.upper() in env:
            _warn(old.upper(), new)
            return env[old.upper()]
    return None


def read(name: str, default: str) -> str:
    """`DIGITS_<NAME>`, else the deprecated `<NAME>`, else `default`."""
    value = os.environ.get(prefixed(name))
    if value is not None:
        return value
    legacy = legacy_value(name, [name])
    return default if legacy is None else legacy


def _warn(old: str, new: str) -> None:
    message = f"{old} is deprecated: set {new} (the old name is read only while {new} is unset)"
    warnings.warn(message, DeprecationWarning, stacklevel=3)
    if old not in _logged:  # once per process: settings may be built more than once
        _logged.add(old)
        logging.getLogger("digits.settings").warning(message)
