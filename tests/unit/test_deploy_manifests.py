"""The deployment to copy (deploy/): Kubernetes manifests valid against the API's schemas,
probes on the endpoints crmflow serves, and dashboards over metrics crmflow exports.

``kubernetes-validate`` bundles the schemas, so this runs offline.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from api.metrics import ApiMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")

#: Metric families of the worker (the SDK's, durations in seconds, counters with ``_total``),
#: as a worker's /metrics served them on this machine; the failure counters appear once a
#: failure happens. The dashboards and autoscaling may use only these and the API's.
WORKER_METRICS = {
    "temporal_activity_execution_failed",
    "temporal_activity_execution_latency",
    "temporal_activity_schedule_to_start_latency",
    "temporal_num_pollers",
    "temporal_request",
    "temporal_request_failure",
    "temporal_worker_task_slots_available",
    "temporal_workflow_completed",
    "temporal_workflow_failed",
    "temporal_workflow_task_schedule_to_start_latency",
}


METRIC_IN_QUERY = re.compile(r"\b((?:temporal|crmflow)_[a-z_]+?)(?:_bucket|_total|_count)?[{\[]")


def documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, document)
        for path in MANIFESTS
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("name", "document"), documents(), ids=lambda v: str(v)[:40])
def test_every_manifest_is_valid_for_the_kubernetes_api(
    name: str, document: dict[str, Any], version: str
) -> None:
    kubernetes_validate.validate(document, version, strict=True)


def test_the_deployment_has_workers_api_probes_budgets_and_worker_autoscaling() -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for _, document in documents():
        by_kind.setdefault(document["kind"], []).append(document)
    deployments = {d["metadata"]["name"]: d for d in by_kind["Deployment"]}
    assert set(deployments) == {"crmflow-worker-v1", "crmflow-api"}
    for deployment in deployments.values():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    worker = deployments["crmflow-worker-v1"]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in worker["containers"][0]["env"]}
    assert env["CRMFLOW_WORKER_BUILD_ID"] == "v1"
    assert worker["terminationGracePeriodSeconds"] > float(
        env["CRMFLOW_WORKER_GRACEFUL_SHUTDOWN_SECONDS"]
    )
    assert {b["metadata"]["name"] for b in by_kind["PodDisruptionBudget"]} == {
        "crmflow-worker",
        "crmflow-api",
    }
    (autoscaler,) = by_kind["HorizontalPodAutoscaler"]
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == "crmflow-worker-v1"
    adapter = yaml.safe_load((DEPLOY / "prometheus" / "adapter-rules.yaml").read_text())
    served = {rule["name"]["as"] for rule in adapter["rules"]}
    assert {m["pods"]["metric"]["name"] for m in autoscaler["spec"]["metrics"]} <= served


def test_dashboard_and_adapter_query_only_metrics_crmflow_exports() -> None:
    api_metrics = {metric.name for metric in ApiMetrics().registry.collect()}
    exported = WORKER_METRICS | api_metrics
    dashboard = json.loads((DEPLOY / "grafana" / "crmflow-dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries.append((DEPLOY / "prometheus" / "adapter-rules.yaml").read_text())
    used = set()
    for query in queries:
        for name in re.findall(
            r"\b((?:temporal|crmflow)_[a-z_]+?)(?:_bucket|_total|_count)?\b[{\[]", query
        ):
            used.add(name)
    assert used, "no metric found in the queries"
    assert used - exported == set()
