"""docker-compose.yml: valid against the Compose Specification, and the operational promises
(secrets required, one public port, health-gated start-up, scaling, grace periods) hold."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from importlib.resources import files
from typing import Any

import jsonschema
import pytest
from celery import Celery

from tests.deploy.support import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    SECRETS,
    MissingVariable,
    as_argv,
    compose_raw,
    compose_resolved,
    read_env_file,
)

PYTHON_SERVICES = ("api", "worker", "flower")


def compose_schema() -> dict[str, Any]:
    """The Compose Specification schema vendored in check-jsonschema (no network needed)."""
    path = files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())


def validate(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_schema_is_the_compose_spec() -> None:
    schema = compose_schema()
    assert "services" in schema["properties"]
    assert schema["properties"]["services"]["type"] == "object"


@pytest.mark.parametrize("stage", ["as written", "interpolated with .env.example"])
def test_compose_file_matches_the_compose_specification(stage: str) -> None:
    document = compose_raw() if stage == "as written" else compose_resolved()
    assert validate(document) == []


def test_schema_validation_catches_mistakes() -> None:
    """Control: the validator rejects a typo, so the test above can fail."""
    document = compose_resolved()
    document["services"]["worker"]["stop_grace_perod"] = "30s"
    document["services"]["api"]["deploy"]["replicas"] = [2]
    errors = validate(document)
    assert any("stop_grace_perod" in error for error in errors)
    assert any("replicas" in error for error in errors)


def test_every_secret_is_required_and_documented() -> None:
    text = COMPOSE_FILE.read_text()
    env = read_env_file()
    for name in SECRETS:
        uses = re.findall(r"\$\{" + name + r"(:?[-?]?)[^}]*\}", text)
        assert uses, f"{name} is never used"
        assert set(uses) == {":?"}, f"every use of {name} must be ${{{name}:?...}}"
        assert name in env, f"{name} missing from .env.example"
        without = {key: value for key, value in env.items() if key != name}
        with pytest.raises(MissingVariable, match=name):
            compose_resolved(without)


def test_redis_is_private_persistent_and_never_evicts() -> None:
    redis = compose_resolved()["services"]["redis"]
    assert "ports" not in redis
    argv = as_argv(redis["command"])
    options = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert argv[0] == "redis-server"
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"
    assert options["--requirepass"] == read_env_file()["REDIS_PASSWORD"]
    assert redis["image"].startswith("redis:7")


def test_only_the_load_balancer_is_published_to_the_network() -> None:
    services = compose_resolved()["services"]
    public = {
        name
        for name, service in services.items()
        for port in service.get("ports", [])
        if not str(port).startswith("127.0.0.1:")
    }
    assert public == {"nginx"}
    assert services["nginx"]["ports"] == ["8000:80"]


def test_api_is_replicated_and_workers_scale_by_one_number() -> None:
    services = compose_resolved()["services"]
    assert services["api"]["deploy"]["replicas"] >= 2
    assert services["worker"]["deploy"]["replicas"] >= 1
    for name in ("api", "worker"):
        # `--scale` cannot work with a fixed name or a published host port.
        assert "container_name" not in services[name]
        assert "ports" not in services[name]


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", value)
    assert match, value
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60}[match[2]]


def test_grace_periods_outlast_graceful_shutdown() -> None:
    services = compose_resolved()["services"]
    assert seconds(services["api"]["stop_grace_period"]) > 10  # uvicorn drains within 10 s
    assert seconds(services["worker"]["stop_grace_period"]) >= 30  # a batch is far shorter
    for name in ("api", "worker"):
        assert services[name]["stop_signal"] == "SIGTERM"


def test_every_service_is_health_checked_and_started_in_order() -> None:
    services = compose_resolved()["services"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services
            assert rule["condition"] == "service_healthy", f"{name} -> {dependency}"
    assert set(services["api"]["depends_on"]) == {"redis"}
    assert set(services["worker"]["depends_on"]) == {"redis"}
    assert set(services["nginx"]["depends_on"]) == {"api"}


def python_module_of(argv: list[str]) -> str | None:
    if argv[:2] == ["python", "-m"]:
        return argv[2]
    return None


def test_container_commands_name_modules_that_exist() -> None:
    services = compose_resolved()["services"]
    checked = []
    for name in PYTHON_SERVICES:
        service = services[name]
        for argv in (as_argv(service["command"]), service["healthcheck"]["test"][1:]):
            module = python_module_of(argv)
            if module:
                assert importlib.util.find_spec(module) is not None, f"{name}: {module}"
                checked.append(module)
    assert {"api", "api.healthcheck", "workers", "workers.healthcheck"} <= set(checked)


def test_flower_uses_the_workers_celery_app_with_basic_auth() -> None:
    flower = compose_resolved()["services"]["flower"]
    argv = as_argv(flower["command"])
    assert argv[:4] == ["celery", "-A", "workers.app:celery_app", "flower"]
    env = read_env_file()
    # Credentials through the environment (Flower reads FLOWER_<OPTION>), never in argv.
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == (
        f"{env['FLOWER_USER']}:{env['FLOWER_PASSWORD']}"
    )
    assert not any(env["FLOWER_PASSWORD"] in arg or "basic-auth" in arg for arg in argv)
    module, _, attribute = argv[2].partition(":")
    app = getattr(importlib.import_module(module), attribute)
    assert isinstance(app, Celery)


def test_flower_and_grafana_are_opt_in_profiles() -> None:
    """`docker compose up` starts neither: Flower costs worker CPU (task events), and Grafana
    has no image on an offline engine. `--profile flower` / `--profile grafana` add them."""
    services = compose_raw()["services"]
    assert services["flower"]["profiles"] == ["flower"]
    assert services["grafana"]["profiles"] == ["grafana"]
    assert [name for name, s in services.items() if "profiles" in s] == ["flower", "grafana"]


def test_host_ports_are_configurable_and_loopback_by_default() -> None:
    services = compose_resolved({**read_env_file(), "HTTP_PORT": "127.0.0.1:18000"})["services"]
    assert services["nginx"]["ports"] == ["127.0.0.1:18000:80"]
    for name, variable, port in (
        ("prometheus", "PROMETHEUS_PORT", 9090),
        ("flower", "FLOWER_PORT", 5555),
        ("grafana", "GRAFANA_PORT", 3000),
    ):
        assert services[name]["ports"] == [f"127.0.0.1:{port}:{port}"], name
        moved = compose_resolved({**read_env_file(), variable: "127.0.0.1:1234"})["services"]
        assert moved[name]["ports"] == [f"127.0.0.1:1234:{port}"], name


def test_tmpfs_is_owned_by_the_app_user() -> None:
    """runc < 1.1.8 ignores tmpfs `mode=` where the image has the directory: uid/gid work."""
    services = compose_resolved()["services"]
    for name in ("api", "worker"):
        (tmpfs,) = services[name]["tmpfs"]
        options = dict(o.partition("=")[::2] for o in tmpfs.split(":", 1)[1].split(","))
        assert (options["uid"], options["gid"]) == ("10001", "10001"), name
        assert "mode" not in options


def test_provisioned_files_exist() -> None:
    services = compose_resolved()["services"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE_FILE.parent / source).exists(), source


def test_every_compose_variable_is_documented_in_env_example() -> None:
    """Each `${VAR}` compose reads is in .env.example: set (secrets) or as a commented example."""
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    text = ENV_EXAMPLE.read_text()
    documented = set(re.findall(r"^#? ?([A-Z_][A-Z0-9_]*)=", text, flags=re.M))
    assert used - documented == set()


def test_multiprocess_metrics_dir_only_where_a_tmpfs_backs_it() -> None:
    """prometheus-client switches to multiprocess mode when the variable merely exists."""
    services = compose_resolved()["services"]
    for name, service in services.items():
        env = service.get("environment", {})
        if "PROMETHEUS_MULTIPROC_DIR" in env:
            mounts = [entry.split(":")[0] for entry in service.get("tmpfs", [])]
            assert env["PROMETHEUS_MULTIPROC_DIR"] in mounts, name
    assert {"api", "worker"} <= {n for n, s in services.items() if "tmpfs" in s}
