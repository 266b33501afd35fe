"""Prometheus: config and rules pass promtool, the alert unit tests pass (and would fail on a
wrong threshold), and every series the rules read is one the application exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from common.contract import QUEUE_BULK, QUEUE_INTERACTIVE
from tests.deploy.support import (
    DEPLOY,
    KNOWN_METRICS,
    ROOT,
    compose_resolved,
    metric_base,
    require_tool,
)

PROM = DEPLOY / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
ALERT_TESTS = PROM / "tests" / "alerts_test.yml"
PROMTOOL_INSTALL = "apt-get install -y prometheus  (Debian package; provides promtool)"
SERIES = re.compile(r"\b(digits[_:][a-z0-9_:]*|up)\b")


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    binary = require_tool("promtool", PROMTOOL_INSTALL)
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def rules() -> list[dict]:
    return [
        rule
        for path in RULE_FILES
        for g in yaml.safe_load(path.read_text())["groups"]
        for rule in g["rules"]
    ]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def unknown_series(expr: str) -> set[str]:
    """Names in a PromQL expression that are neither app metrics nor our recording rules."""
    names = set(SERIES.findall(expr))
    return {
        name
        for name in names
        if name != "up" and name not in recorded_names() and metric_base(name) not in KNOWN_METRICS
    }


def test_config_is_valid_and_loads_every_rule_file() -> None:
    result = promtool("check", "config", str(PROM / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rules_pass_promtool(path: Path) -> None:
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_catch_a_wrong_burn_threshold(tmp_path: Path) -> None:
    """Control: with a budget of 10 % instead of 0.01 % the unit tests must fail."""
    shutil.copytree(PROM / "rules", tmp_path / "rules")
    shutil.copytree(PROM / "tests", tmp_path / "tests")
    alerts = tmp_path / "rules" / "alerts.yml"
    alerts.write_text(alerts.read_text().replace("* 0.0001)", "* 0.1)"))
    result = promtool("test", "rules", str(tmp_path / "tests" / ALERT_TESTS.name))
    assert result.returncode != 0
    assert "DigitsAvailabilityBudgetBurnFast" in result.stdout + result.stderr


def test_rules_read_only_known_series() -> None:
    for rule in rules():
        assert not unknown_series(rule["expr"]), (rule.get("record") or rule["alert"], rule["expr"])


def test_unknown_series_are_noticed() -> None:
    assert unknown_series("sum(rate(digits_http_request_total[5m]))") == {
        "digits_http_request_total"
    }
    assert unknown_series("digits:sli_errors:ratio_rate7m") == {"digits:sli_errors:ratio_rate7m"}


def test_the_promised_alerts_exist() -> None:
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    for slo in ("Availability", "Latency"):
        for speed, severity in (("Fast", "page"), ("Slow", "ticket")):
            rule = alerts[f"Digits{slo}BudgetBurn{speed}"]
            assert rule["labels"]["severity"] == severity
            # Multi-window: each condition pairs a long and a short window.
            assert len(re.findall(r"ratio_rate\w+", rule["expr"])) == 4
    # Any namespace's interactive queue (DIGITS_NAMESPACE; the default is digits.interactive).
    stale = re.search(r'queue=~"(.+?)"', alerts["DigitsInteractiveQueueStale"]["expr"])
    assert stale is not None
    pattern = stale[1].encode().decode("unicode_escape")  # PromQL string escapes
    assert re.fullmatch(pattern, QUEUE_INTERACTIVE) and re.fullmatch(pattern, "mine.interactive")
    assert not re.fullmatch(pattern, QUEUE_BULK)
    assert "absent(digits_worker_up)" in alerts["DigitsNoWorkers"]["expr"]
    assert "sum(digits_worker_up) == 0" in alerts["DigitsNoWorkers"]["expr"]


def test_objectives_match_the_slo() -> None:
    recorded = {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}
    assert recorded["digits:slo_availability:objective"] == "vector(0.9999)"
    bucket = recorded["digits:sli_slow:ratio_rate5m"]
    assert 'le="2.0"' in bucket  # prometheus-client renders the 2 s bucket bound as 2.0


def test_scrape_targets_follow_the_compose_services() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    services = compose_resolved()["services"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job, port in (("api", 8000), ("worker", 9100)):
        (sd,) = jobs[job]["dns_sd_configs"]
        assert sd["port"] == port and sd["type"] == "A"
        assert job in sd["names"] and job in services
    # The containers listen on the code's defaults (compose does not set the ports):
    # tests/deploy/test_settings_sources.py ties these numbers to the settings classes.
    assert "DIGITS_WORKER_METRICS_PORT" not in services["worker"]["environment"]
    assert "DIGITS_API_PORT" not in services["api"]["environment"]


def test_every_metric_name_is_defined_in_the_application() -> None:
    """The names used in rules and dashboards appear, spelled out, in the API/worker source."""
    source = "\n".join(
        path.read_text()
        for package in ("api", "workers", "common")
        for path in (ROOT / package).rglob("*.py")
    )
    missing = []
    for name, kind in KNOWN_METRICS.items():
        stem = name.removesuffix("_total") if kind == "counter" else name
        stem = stem.removesuffix("_info") if kind == "info" else stem
        if not re.search(rf"[\"']{re.escape(stem)}(_total|_info)?[\"']", source):
            missing.append(name)
    assert not missing, f"not defined in api/, workers/ or common/: {missing}"


SLI_SELECTOR = re.compile(r"digits_http_request[a-z_]*\{([^}]*)\}")


def test_every_sli_rule_uses_the_one_selector() -> None:
    """The SLI is defined once: the same route matchers in every rule that reads raw traffic,
    leaving out the service's own endpoints (the dashboard's /v1/slo, health probes)."""
    from tests.observability.support import SLI, in_sli

    selectors = {
        match
        for rule in rules()
        if rule.get("record", "").startswith("digits:sli_")
        for match in SLI_SELECTOR.findall(rule["expr"])
    }
    assert selectors == {SLI}
    grafana = (DEPLOY / "grafana" / "dashboard.py").read_text()
    assert f"SLI = '{SLI}'" in grafana  # its 30-day budget panel, the one unrecorded window
    inside = ["/v1/predict", "/v1/postcodes", "/v1/jobs/{job_id}", "/v2/models/{name}/infer"]
    outside = ["/v1/slo", "/livez", "/readyz", "/metrics", "/dashboard", "/v2/health/ready"]
    outside.append("/v2/models/{name}/versions/{version}/ready")
    assert all(in_sli(route) for route in inside)
    assert not any(in_sli(route) for route in outside)


def test_make_run_config_is_valid(tmp_path: Path) -> None:
    """deploy/prometheus/local.yml, filled in as scripts/run.sh does, passes promtool."""
    from tests.observability.prometheus import local_config

    config = tmp_path / "prometheus.yml"
    config.write_text(local_config("127.0.0.1:8000", "127.0.0.1:9100", "5s"))
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout
    run_sh = (ROOT / "scripts" / "run.sh").read_text()
    for placeholder in re.findall(r"@[A-Z_]+@", (PROM / "local.yml").read_text()):
        assert f"s|{placeholder}|" in run_sh, placeholder
