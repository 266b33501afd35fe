"""One source for every default: the settings classes (common/settings.py, api/config.py,
workers/config.py). The deployment files pass settings through without values, so a default
cannot drift between compose, .env.example, the k8s ConfigMap, the Dockerfiles and the code
(compose once said REVIEW_THRESHOLD=0.8 while the code and README said 0.90). The few values
they do set are wiring (paths inside the images, ports the other files name), checked here
against the code too."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from api.config import ApiSettings
from common.environment import prefixed
from tests.deploy.support import (
    DEPLOY,
    ENV_EXAMPLE,
    ROOT,
    compose_raw,
    compose_resolved,
    read_env_file,
)
from workers.config import WorkerSettings

WIRING = {
    "DIGITS_REDIS_URL": "the compose network's Redis, with the password from .env",
    "DIGITS_MODELS_DIR": "where the images keep the registry (/app/models)",
    "PROMETHEUS_MULTIPROC_DIR": "the tmpfs mounted for prometheus-client",
    "DIGITS_API_KEYS": "a secret, required from .env",
    "DIGITS_PROMETHEUS_URL": "where the deployment's Prometheus answers (compose: its service)",
}
"""Settings the deployment files may give a value: not tunables but facts of the deployment."""
IMPORT_TIME = {"PROMETHEUS_MULTIPROC_DIR", "DIGITS_NAMESPACE"}
"""Read from the environment when a module is imported, not by a settings class: prometheus-
client's storage (`common.prom`) and the key and queue names (`common.contract`)."""
NOT_PASSED = {"DIGITS_API_HOST", "DIGITS_API_PORT", "DIGITS_WORKER_METRICS_PORT"}
"""Settings the containers keep at their defaults because other files name them (nginx,
Prometheus, healthchecks, k8s Services); `test_ports_are_the_code_defaults` ties them."""


def fields(settings: type[BaseSettings]) -> set[str]:
    return {prefixed(name) for name in settings.model_fields}


def defaults(settings: type[BaseSettings]) -> dict[str, Any]:
    return {prefixed(name): f.default for name, f in settings.model_fields.items()}


@pytest.mark.parametrize(
    ("service", "settings"), [("api", ApiSettings), ("worker", WorkerSettings)]
)
def test_compose_passes_every_setting_through_without_a_value(
    service: str, settings: type[BaseSettings]
) -> None:
    environment = compose_raw()["services"][service]["environment"]
    settable = fields(settings) - NOT_PASSED
    assert settable - set(environment) == set(), "settings compose cannot set from .env"
    valued = {key for key, value in environment.items() if value is not None}
    assert valued & settable <= set(WIRING), "defaults belong in the settings classes"
    assert set(environment) - fields(settings) <= IMPORT_TIME, "unknown names"


def test_env_example_sets_no_setting() -> None:
    every = fields(ApiSettings) | fields(WorkerSettings)
    assert set(read_env_file()) & every == {"DIGITS_API_KEYS"}  # a secret, not a default
    # ... but names the common overrides, commented out, so they are discoverable.
    assert "# DIGITS_REVIEW_THRESHOLD=" in ENV_EXAMPLE.read_text()


def test_k8s_configmap_holds_wiring_only() -> None:
    config = yaml.safe_load((DEPLOY / "k8s" / "config.yaml").read_text())
    assert set(config["data"]) <= set(WIRING)
    assert (
        config["data"]["DIGITS_MODELS_DIR"]
        == compose_raw()["services"]["worker"]["environment"]["DIGITS_MODELS_DIR"]
    )


@pytest.mark.parametrize("dockerfile", ["Dockerfile.api", "Dockerfile.worker"])
def test_dockerfiles_set_no_setting(dockerfile: str) -> None:
    text = re.sub(r"\\\n", " ", (ROOT / dockerfile).read_text())
    env = {
        key
        for line in text.splitlines()
        if line.startswith("ENV ")
        for key in re.findall(r"([A-Z_][A-Z0-9_]*)=", line)
    }
    every = fields(ApiSettings) | fields(WorkerSettings)
    assert env & every <= set(WIRING)


def test_ports_are_the_code_defaults() -> None:
    api_port = ApiSettings.model_fields["api_port"].default
    metrics_port = WorkerSettings.model_fields["worker_metrics_port"].default
    services = compose_resolved()["services"]
    assert services["api"]["expose"] == [str(api_port)]
    assert services["worker"]["expose"] == [str(metrics_port)]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    ports = {
        job["job_name"]: job["dns_sd_configs"][0]["port"] for job in scrape["scrape_configs"][:2]
    }
    assert ports == {"api": api_port, "worker": metrics_port}
    assert (
        f"set $api_upstream http://api:{api_port};"
        in (DEPLOY / "nginx" / "default.conf").read_text()
    )
    for name, port in (("api", api_port), ("worker", metrics_port)):
        doc = next(
            d
            for d in yaml.safe_load_all((DEPLOY / "k8s" / f"{name}.yaml").read_text())
            if d and d["kind"] == "Deployment"
        )
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        assert [p["containerPort"] for p in container["ports"]] == [port]
        assert doc["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)


def readme_defaults() -> dict[str, str]:
    """`| `VAR` | default | ... |` rows of the README's Configuration table (single names)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Configuration") :]
    section = section[: section.index("\n### ", 1)]
    rows = re.findall(r"^\| `([A-Z_0-9]+)` \| ([^|]+) \|", section, flags=re.M)
    return {name: value.strip() for name, value in rows}


def test_readme_documents_the_code_defaults() -> None:
    code = {**defaults(ApiSettings), **defaults(WorkerSettings)}
    documented = readme_defaults()
    assert {"DIGITS_REVIEW_THRESHOLD", "DIGITS_RESULT_TTL_S", "DIGITS_MAX_BATCH_SIZE"} <= set(
        documented
    )
    checked = 0
    for name, text in documented.items():
        number = re.fullmatch(r"([0-9][0-9,]*(?:\.[0-9]+)?)(?: \(.*\))?", text)
        if name in code and number and isinstance(code[name], int | float):
            assert float(number[1].replace(",", "")) == pytest.approx(code[name]), name
            checked += 1
    assert checked >= 5
