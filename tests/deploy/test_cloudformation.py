"""deploy/aws/cloudformation.yaml: cfn-lint-clean (offline: cfn-lint ships the resource specs),
and the production shape the README describes: ALB health-checking /readyz in front of an
Auto Scaling group, ElastiCache Redis Multi-AZ with TLS and AUTH from Secrets Manager, security
groups chained ALB -> hosts -> Redis, scaling on the queue age the hosts publish."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import COMPOSE_FILE, DEPLOY, compose_raw, require_tool

TEMPLATE = DEPLOY / "aws" / "cloudformation.yaml"
USER_DATA = DEPLOY / "aws" / "user-data.sh"
OVERRIDE = DEPLOY / "aws" / "compose.elasticache.yml"


def cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    binary = require_tool("cfn-lint", "pip install -r requirements/dev.txt (cfn-lint)")
    return subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    from cfnlint.decode import decode

    document, errors = decode(str(TEMPLATE))
    assert not errors, errors
    return document


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in template["Resources"].items() if r["Type"] == kind}


def test_cfn_lint_finds_nothing() -> None:
    result = cfn_lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_rejects_a_broken_template(tmp_path: Path) -> None:
    """Control: a misspelt property and a bad reference fail, so the test above can fail."""
    broken = TEMPLATE.read_text().replace("HealthCheckPath: /readyz", "HealthCheckPth: /readyz")
    broken = broken.replace("VpcId: !Ref VpcId", "VpcId: !Ref NoSuchVpc", 1)
    path = tmp_path / "broken.yaml"
    path.write_text(broken)
    result = cfn_lint(path)
    assert result.returncode != 0
    assert "HealthCheckPth" in result.stdout and "NoSuchVpc" in result.stdout


def test_alb_checks_readyz_and_drains_longer_than_the_api(template: dict[str, Any]) -> None:
    (group,) = resources(template, "AWS::ElasticLoadBalancingV2::TargetGroup").values()
    assert group["HealthCheckPath"] == "/readyz" and group["Port"] == 8000
    attributes = {a["Key"]: a["Value"] for a in group["TargetGroupAttributes"]}
    assert int(attributes["deregistration_delay.timeout_seconds"]) > 10  # uvicorn drains 10 s
    listeners = resources(template, "AWS::ElasticLoadBalancingV2::Listener").values()
    assert {listener["Protocol"] for listener in listeners} == {"HTTPS", "HTTP"}
    (asg,) = resources(template, "AWS::AutoScaling::AutoScalingGroup").values()
    assert asg["HealthCheckType"] == "ELB"
    assert asg["VPCZoneIdentifier"] == {"Ref": "PrivateSubnetIds"}


def test_redis_is_multi_az_tls_auth_and_never_evicts(template: dict[str, Any]) -> None:
    (redis,) = resources(template, "AWS::ElastiCache::ReplicationGroup").values()
    assert redis["MultiAZEnabled"] is True and redis["AutomaticFailoverEnabled"] is True
    assert redis["NumCacheClusters"] >= 2
    assert redis["TransitEncryptionEnabled"] is True and redis["AtRestEncryptionEnabled"] is True
    assert "resolve:secretsmanager" in str(redis["AuthToken"])
    (parameters,) = resources(template, "AWS::ElastiCache::ParameterGroup").values()
    assert parameters["Properties"]["maxmemory-policy"] == "noeviction"  # as in compose


def test_security_groups_chain_alb_hosts_redis(template: dict[str, Any]) -> None:
    groups = resources(template, "AWS::EC2::SecurityGroup")
    host = groups["HostSecurityGroup"]["SecurityGroupIngress"]
    assert [(r["FromPort"], r["SourceSecurityGroupId"]) for r in host] == [
        (8000, {"Fn::GetAtt": ["LoadBalancerSecurityGroup", "GroupId"]})
    ]
    redis = groups["RedisSecurityGroup"]["SecurityGroupIngress"]
    assert [(r["FromPort"], r["SourceSecurityGroupId"]) for r in redis] == [
        (6379, {"Fn::GetAtt": ["HostSecurityGroup", "GroupId"]})
    ]
    ports = [r["FromPort"] for g in groups.values() for r in g.get("SecurityGroupIngress", [])]
    assert 22 not in ports  # no SSH: Session Manager (AmazonSSMManagedInstanceCore)


def test_scaling_follows_the_queue_age_the_hosts_publish(template: dict[str, Any]) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    (asg,) = resources(template, "AWS::AutoScaling::AutoScalingGroup").values()
    for alarm in alarms.values():
        assert (alarm["Namespace"], alarm["MetricName"]) == ("Digits", "QueueOldestAgeSeconds")
        assert alarm["Dimensions"] == [
            {"Name": "AutoScalingGroupName", "Value": asg["AutoScalingGroupName"]}
        ]
    actions = {a["Ref"] for alarm in alarms.values() for a in alarm["AlarmActions"]}
    assert actions == {"ScaleOut", "ScaleIn"}
    user_data = USER_DATA.read_text()
    assert "--namespace Digits" in user_data and "--metric-name QueueOldestAgeSeconds" in user_data
    assert "AutoScalingGroupName=" in user_data


def test_hosts_boot_with_the_repository_user_data(template: dict[str, Any]) -> None:
    (launch,) = resources(template, "AWS::EC2::LaunchTemplate").values()
    boot = launch["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"][0]
    assert "exec bash /opt/digits/deploy/aws/user-data.sh" in boot
    exported = set(re.findall(r"\b(DIGITS_[A-Z_]+|WORKERS)=", boot))
    read = set(re.findall(r'^(DIGITS_[A-Z_]+|WORKERS)="\$\{', USER_DATA.read_text(), flags=re.M))
    assert exported <= read, exported - read
    assert "compose.elasticache.yml" in USER_DATA.read_text()


class _ComposeLoader(yaml.SafeLoader):
    pass


_ComposeLoader.add_constructor("!reset", lambda loader, node: "!reset")


def test_elasticache_override_replaces_the_local_redis() -> None:
    override = yaml.load(OVERRIDE.read_text(), Loader=_ComposeLoader)["services"]
    base = compose_raw()["services"]
    for name, service in override.items():
        assert "redis" in base[name]["depends_on"], name
        assert service["depends_on"] == "!reset"
        assert service["environment"]["DIGITS_REDIS_URL"].startswith("${DIGITS_REDIS_URL:?")
    users = {n for n, s in base.items() if "DIGITS_REDIS_URL" in str(s.get("environment", ""))}
    assert users == set(override), "every service that talks to Redis is pointed at ElastiCache"
    assert COMPOSE_FILE.name == "docker-compose.yml"
