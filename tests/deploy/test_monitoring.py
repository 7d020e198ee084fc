"""The prometheus-operator manifests (deploy/monitoring, a kustomize Component): the production
overlay carries them, the ServiceMonitor scrapes the Service's pods where the metrics are, and the
PrometheusRule holds exactly the generated rules. Offline, with `kubectl kustomize`; no schema
for these CRDs ships with kubernetes-validate, so the fields used are checked here."""

from __future__ import annotations

from credit_risk.monitoring.alerts import rule_groups
from tests.conftest import ROOT
from tests.deploy.manifests import needs_kubectl, one, render

K8S = ROOT / "deploy" / "k8s"
PRODUCTION = K8S / "overlays" / "production"
pytestmark = needs_kubectl

ENDPOINT_FIELDS = frozenset(
    {
        "port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
        "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings", "tlsConfig",
        "authorization", "basicAuth", "bearerTokenSecret", "oauth2", "followRedirects",
        "enableHttp2", "filterRunning", "proxyUrl", "trackTimestampsStaleness",
    }
)  # fmt: skip
"""ServiceMonitor endpoint fields of the prometheus-operator's monitoring.coreos.com/v1 API:
a misspelt one would be dropped by the API server without a word."""


def test_production_carries_the_operator_manifests_and_the_base_does_not() -> None:
    production = render(PRODUCTION)
    namespace = one(production, "Namespace")["metadata"]["name"]
    for kind in ("ServiceMonitor", "PrometheusRule"):
        doc = one(production, kind)
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        assert doc["metadata"]["namespace"] == namespace
    base_kinds = {d["kind"] for d in render(K8S / "base")}
    assert not base_kinds & {"ServiceMonitor", "PrometheusRule"}, "the base needs no CRDs"


def test_the_service_monitor_scrapes_the_pods_metrics() -> None:
    docs = render(PRODUCTION)
    monitor = one(docs, "ServiceMonitor")["spec"]
    service = one(docs, "Service")
    wanted = monitor["selector"]["matchLabels"]
    assert wanted.items() <= service["metadata"]["labels"].items(), "selects the Service"
    assert set(monitor) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    (endpoint,) = monitor["endpoints"]
    assert set(endpoint) <= ENDPOINT_FIELDS, set(endpoint) - ENDPOINT_FIELDS
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    pod = one(docs, "Deployment")["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    annotations = pod["metadata"]["annotations"]
    assert ports[port["targetPort"]] == int(annotations["prometheus.io/port"])
    assert endpoint["path"] == annotations["prometheus.io/path"] == "/metrics"
    # BentoML's `endpoint` label (the route) must win over the operator's target label
    assert endpoint["honorLabels"] is True


def test_the_prometheus_rule_is_the_generated_rules() -> None:
    rule = one(render(PRODUCTION), "PrometheusRule")
    assert rule["spec"] == rule_groups()
