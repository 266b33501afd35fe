"""Shared helpers for the deployment tests: file locations, compose interpolation, metric names.

No Docker engine runs here, so these tests check the deployment files statically (schemas,
linters, promtool) and run the containers' own commands directly on the host.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

SECRETS = (
    "REDIS_PASSWORD",
    "DIGITS_API_KEYS",
    "FLOWER_USER",
    "FLOWER_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)
"""Variables compose must refuse to start without (`${VAR:?}`)."""

API_METRICS = {
    "digits_http_requests_total": "counter",
    "digits_http_request_duration_seconds": "histogram",
    "digits_http_requests_in_flight": "gauge",
    "digits_sync_fallback_total": "counter",
    "digits_rejections_total": "counter",
    "digits_queue_depth": "gauge",
    "digits_queue_oldest_age_seconds": "gauge",
    "digits_queue_images": "gauge",
    "digits_reviews_resolved_total": "counter",
}
WORKER_METRICS = {
    "digits_batch_size": "histogram",
    "digits_model_seconds": "histogram",
    "digits_queue_wait_seconds": "histogram",
    "digits_job_seconds": "histogram",
    "digits_predictions_total": "counter",
    "digits_confidence": "histogram",
    "digits_needs_review_total": "counter",
    "digits_model_info": "info",
    "digits_worker_up": "gauge",
    "digits_duplicate_results_total": "counter",
    "digits_model_reference_class_share": "gauge",
    "digits_model_reference_confidence_share": "gauge",
}
KNOWN_METRICS = {**API_METRICS, **WORKER_METRICS}
"""The metric names the application exposes (agreed with the API and worker code)."""

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(KeyError):
    """A `${VAR:?message}` whose variable is unset: compose stops with the message."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose-style variable interpolation (`$$`, `${V}`, `${V:-d}`, `${V-d}`, `${V:?e}`)."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"] or "", match["arg"] or ""
        value = env.get(name)
        unset_or_empty = value is None or (op.startswith(":") and value == "")
        if op.endswith("?") and unset_or_empty:
            raise MissingVariable(f"{name}: {arg}")
        if op.endswith("-") and unset_or_empty:
            return arg
        return value or ""

    return _VAR.sub(replace, text)


def read_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def compose_raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_resolved(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file as `docker compose config` would see it with `.env.example` values."""
    values = read_env_file() if env is None else env
    return yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), values))


def as_argv(command: str | list[str]) -> list[str]:
    return command.split() if isinstance(command, str) else list(command)


def metric_base(name: str) -> str:
    """`digits_x_bucket` -> `digits_x`: series names back to the metric they belong to."""
    for suffix in ("_bucket", "_count", "_sum", "_created"):
        if name.endswith(suffix) and name[: -len(suffix)] in KNOWN_METRICS:
            return name[: -len(suffix)]
    return name


def require_tool(name: str, install: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(ROOT / ".venv" / "bin"))
    if path is None:
        pytest.skip(f"{name} not installed; install with: {install}")
    return path


def venv_env(**extra: str) -> dict[str, str]:
    """The test environment plus overrides, with the repo importable (`python -m api...`)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def keda_triggers() -> list[dict[str, Any]]:
    """The worker ScaledObject's triggers (deploy/k8s/worker.yaml)."""
    docs = yaml.safe_load_all((DEPLOY / "k8s" / "worker.yaml").read_text())
    (scaled,) = [d for d in docs if d and d["kind"] == "ScaledObject"]
    return scaled["spec"]["triggers"]


def gjson_path(path: str) -> list[str]:
    """The keys of a simple GJSON path (KEDA's `valueLocation`): dots separate, `\\.` escapes."""
    return [part.replace("\0", ".") for part in path.replace("\\.", "\0").split(".")]


def gjson_get(document: Any, path: str) -> Any:
    """What KEDA reads at `path` in a JSON document."""
    for key in gjson_path(path):
        document = document[key]
    return document


SITE = ROOT / "deploy" / "nginx" / "default.conf"
NGINX_INSTALL = "apt-get install -y nginx-light"


def nginx_site(tmp_path: Path, listen: str, swaps: dict[str, str]) -> Path:
    """deploy/nginx/default.conf listening on `listen` with `swaps` applied (each must occur
    exactly once, so a change to the shipped file cannot silently skip one)."""
    swaps = {"listen 80 default_server;": f"listen {listen} default_server;", **swaps}
    text = SITE.read_text()
    for old, new in swaps.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    site = tmp_path / "site.conf"
    site.write_text(text)
    return site


def main_conf(tmp_path: Path, site: Path) -> Path:
    """A minimal nginx.conf around the site file, as the nginx image's own one includes it."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach tmp_path
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"{user}pid {tmp_path}/nginx.pid;\nevents {{}}\nhttp {{\n  include {site};\n}}\n"
    )
    return conf


def nginx_args(tmp_path: Path, conf: Path) -> list[str]:
    nginx = require_tool("nginx", NGINX_INSTALL)
    return [nginx, "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")]
