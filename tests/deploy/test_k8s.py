"""deploy/k8s: every built-in resource validates against the Kubernetes JSON schemas (strict:
unknown fields are errors), KEDA resources against a structural schema, and the manifests agree
with the code (queue names, entry points, ports) and with each other (selectors, targets)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from common.contract import QUEUE_BULK, QUEUE_INTERACTIVE
from tests.deploy.support import DEPLOY, gjson_path, keda_triggers

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.33.0"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}

_NAME = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
_METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": _NAME, "namespace": _NAME},
}
KEDA_SCHEMAS: dict[str, dict[str, Any]] = {
    # The fields KEDA 2.x documents; enough to catch typos and wrong types without the CRDs.
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["scaleTargetRef", "triggers"],
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name"],
                        "properties": {
                            "name": _NAME,
                            "kind": {"type": "string"},
                            "apiVersion": {"type": "string"},
                        },
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "idleReplicaCount": {"type": "integer", "minimum": 0},
                    "advanced": {"type": "object"},
                    "fallback": {"type": "object"},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["type", "metadata"],
                            "properties": {
                                "type": {"type": "string"},
                                "name": {"type": "string"},
                                "metadata": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                                "authenticationRef": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["name"],
                                    "properties": {"name": _NAME, "kind": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["parameter", "name", "key"],
                            "properties": {
                                "parameter": {"type": "string"},
                                "name": _NAME,
                                "key": {"type": "string"},
                            },
                        },
                    },
                    "env": {"type": "array"},
                },
            },
        },
    },
}


def documents() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == kind}


def label(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def validate_keda(doc: dict[str, Any]) -> None:
    jsonschema.validate(doc, KEDA_SCHEMAS[doc["kind"]])


@pytest.mark.parametrize(
    "doc",
    [doc for _, doc in documents() if doc["kind"] not in KEDA_KINDS],
    ids=label,
)
def test_builtin_resources_match_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    "doc", [doc for _, doc in documents() if doc["kind"] in KEDA_KINDS], ids=label
)
def test_keda_resources_match_their_structure(doc: dict[str, Any]) -> None:
    validate_keda(doc)


def test_validators_reject_mistakes() -> None:
    """Controls: a misspelt field fails both the Kubernetes and the KEDA check."""
    deployment = by_kind("Deployment")["api"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    scaled = by_kind("ScaledObject")["worker"]
    scaled["spec"]["maxReplicas"] = 10
    with pytest.raises(jsonschema.ValidationError):
        validate_keda(scaled)


def test_every_document_is_namespaced_to_digits() -> None:
    for _, doc in documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "digits", label(doc)


def test_keda_scales_the_worker_on_the_images_of_both_queues() -> None:
    scaled = by_kind("ScaledObject")["worker"]["spec"]
    assert scaled["scaleTargetRef"]["name"] in by_kind("Deployment")
    assert scaled["scaleTargetRef"]["name"] == "worker"
    assert scaled["minReplicaCount"] >= 1  # a cold model would break the 2 s promise
    assert {t["type"] for t in scaled["triggers"]} == {"metrics-api"}
    paths = {gjson_path(t["metadata"]["valueLocation"])[1]: t for t in keda_triggers()}
    paths = {q: gjson_path(t["metadata"]["valueLocation"]) for q, t in paths.items()}
    assert set(paths) == {QUEUE_INTERACTIVE, QUEUE_BULK}
    assert all(p == ["queues", q, "images"] for q, p in paths.items()), paths
    # The API's Service, by its cluster DNS name and port, on the unauthenticated /v1/slo.
    service = by_kind("Service")["api"]
    port = service["spec"]["ports"][0]["port"]
    host = f"http://api.digits.svc.cluster.local{'' if port == 80 else f':{port}'}"
    assert {t["metadata"]["url"] for t in scaled["triggers"]} == {f"{host}/v1/slo"}
    targets = {
        gjson_path(t["metadata"]["valueLocation"])[1]: float(t["metadata"]["targetValue"])
        for t in scaled["triggers"]
    }
    assert targets[QUEUE_INTERACTIVE] < targets[QUEUE_BULK]  # the 2 s promise scales sooner


def test_api_hpa_scales_the_api_on_cpu() -> None:
    hpa = by_kind("HorizontalPodAutoscaler")["api"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}
    assert hpa["minReplicas"] >= 2
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"


def test_services_select_their_deployments() -> None:
    workloads = {**by_kind("Deployment"), **by_kind("StatefulSet")}
    for name, service in by_kind("Service").items():
        selector = service["spec"]["selector"]
        labels = workloads[name]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        ports = {
            p["name"]
            for c in workloads[name]["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def test_containers_probe_and_run_modules_that_exist() -> None:
    for name in ("api", "worker"):
        (container,) = by_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"]
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert probe in container, f"{name}: {probe}"
        assert container["command"][:2] == ["python", "-m"]
        assert importlib.util.find_spec(container["command"][2])
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    api = by_kind("Deployment")["api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/livez"
    worker = by_kind("Deployment")["worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["livenessProbe"]["exec"]["command"] == ["python", "-m", "workers.healthcheck"]
    flower = by_kind("Deployment")["flower"]["spec"]["template"]["spec"]["containers"][0]
    assert flower["command"][:3] == ["celery", "-A", "workers.app:celery_app"]
