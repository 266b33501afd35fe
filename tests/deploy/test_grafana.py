"""Grafana: the committed dashboard is what the generator builds, it is provisioned where compose
mounts it, every query is valid PromQL over known series, and the SLO panels are all there."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.support import DEPLOY, compose_resolved
from tests.deploy.test_prometheus import promtool, unknown_series

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "digits-slo.json"
REQUIRED_PANELS = (
    "Availability",
    "Error budget",
    "Latency p50 / p95 / p99",
    "Throughput",
    "Queue depth",
    "Oldest queued job",
    "Workers up",
    "Batch size",
    "Review rate",
    "Predicted digit distribution",
    "Confidence histogram",
)


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def queries() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def test_committed_json_is_what_the_generator_builds() -> None:
    spec = importlib.util.spec_from_file_location("dashboard", GRAFANA / "dashboard.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text() == module.render(), "run: python deploy/grafana/dashboard.py"


def test_every_slo_panel_is_present() -> None:
    titles = [panel["title"] for panel in panels()]
    for wanted in REQUIRED_PANELS:
        assert any(title.startswith(wanted) for title in titles), wanted


def test_panels_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    assert source["url"] == "http://prometheus:9090"
    for panel in panels():
        assert panel["datasource"]["uid"] == source["uid"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])


def test_layout_is_sane() -> None:
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24


def test_queries_read_only_known_series() -> None:
    for expr in queries():
        assert not unknown_series(expr), expr


def test_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every query (as a recording rule; Grafana's $__range made concrete)."""
    exprs = [expr.replace("$__range", "1h") for expr in queries()]
    rules = {
        "groups": [
            {"name": "q", "rules": [{"record": f"q:{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    good = tmp_path / "queries.yml"
    good.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(good))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout

    rules["groups"][0]["rules"][0]["expr"] = "sum(rate(digits_confidence_bucket[5m])"
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(rules))
    assert promtool("check", "rules", str(bad)).returncode != 0


def test_compose_provisions_the_dashboard() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/digits.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    grafana = compose_resolved()["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert mounts[path] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/{DASHBOARD.name}"
