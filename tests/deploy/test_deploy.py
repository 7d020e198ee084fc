"""The Kubernetes manifests are valid, wired together, and run the image the way it needs.

Offline only: JSON-schema validation with kubernetes-validate (strict: unknown fields fail),
rendering with `kubectl kustomize`, and cross-checks no schema can make (selectors that match,
volumes that exist, a BentoML config BentoML accepts).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from bentoml._internal.configuration.containers import BentoMLConfiguration
from bentoml._internal.configuration.helpers import expand_env_var
from bentoml._internal.configuration.v2 import _SERVICE_CONFIG as SERVICE_CONFIG_SCHEMA
from bentoml.exceptions import BentoMLConfigException

from credit_risk.policy import MAX_BODY_BYTES
from credit_risk.serving.tuning import KEEP_ALIVE_TIMEOUT_S, REQUEST_TIMEOUT_S
from load_tests.ingress_proxy import UPSTREAM_KEEPALIVE_S, IngressLimits, nginx_size_bytes
from service import CreditRiskService
from tests.conftest import ROOT
from tests.deploy.manifests import KUBECTL, needs_kubectl, one, render

K8S_DIR = ROOT / "deploy" / "k8s"
BASE = K8S_DIR / "base"
OVERLAYS = sorted(p for p in (K8S_DIR / "overlays").iterdir() if p.is_dir())
KUSTOMIZATIONS = [BASE, *OVERLAYS]
# The oldest Kubernetes minor still common in managed clusters, and kubectl's own.
K8S_VERSIONS = ("1.29.0", "1.32.0")
CONTAINER_NAME = "credit-risk"
IMAGE_NAME = "credit_risk_service"
# The services of the bento by name (the keys of per-service config) and their decorator config.
SERVICES = {name: svc.config for name, svc in CreditRiskService.all_services().items()}
OPERATOR_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})
"""prometheus-operator CRDs (deploy/monitoring): kubernetes-validate has no schema for them, so
they are skipped here and checked by tests/deploy/test_monitoring.py."""
DOCKERFILE_TEMPLATE = ROOT / "deploy" / "image" / "Dockerfile.template"


def image_uid() -> int:
    """The UID (and GID) the image's user gets: deploy/image/Dockerfile.template."""
    text = DOCKERFILE_TEMPLATE.read_text(encoding="utf-8")
    uid = re.search(r"^ARG BENTO_USER_UID=(\d+)$", text, re.MULTILINE)
    gid = re.search(r"^ARG BENTO_USER_GID=(\d+)$", text, re.MULTILINE)
    assert uid
    assert gid
    assert uid.group(1) == gid.group(1), "one UID and GID for the user"
    return int(uid.group(1))


IMAGE_UID = image_uid()


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(K8S_DIR)) for p in paths]


def _kustomization(path: Path) -> dict[str, Any]:
    return yaml.safe_load((path / "kustomization.yaml").read_text(encoding="utf-8"))


def _resource_files() -> list[Path]:
    """Plain manifest files a kustomization lists under `resources` (not patches)."""
    files = []
    for k in KUSTOMIZATIONS:
        for entry in _kustomization(k).get("resources", []):
            path = (k / entry).resolve()
            if path.is_file():
                files.append(path)
    return files


def _config_files() -> list[Path]:
    """BentoML config files fed to configMapGenerator."""
    files = []
    for k in KUSTOMIZATIONS:
        for gen in _kustomization(k).get("configMapGenerator", []):
            files += [k / f for f in gen.get("files", [])]
    return files


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == CONTAINER_NAME)


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _cpu(quantity: str | int | float) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


_MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}


def _memory(quantity: str | int) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", str(quantity))
    assert match, f"unparsed memory quantity {quantity!r}"
    number, unit = match.groups()
    return int(float(number) * (_MEMORY_UNITS[unit] if unit else 1))


def _schema_keys(schema: dict[Any, Any]) -> dict[str, Any]:
    """The key tree of BentoML's per-service config schema (`s.Optional` keys unwrapped)."""
    keys: dict[str, Any] = {}
    for key, value in schema.items():
        name = getattr(key, "schema", key)
        if isinstance(name, str):
            keys[name] = _schema_keys(value) if isinstance(value, dict) else None
    return keys


def _unknown_keys(given: dict[str, Any], known: dict[str, Any], prefix: str) -> list[str]:
    """Keys BentoML would silently ignore (its schema allows extra keys): typos, mostly."""
    unknown = []
    for key, value in given.items():
        if key not in known:
            unknown.append(prefix + key)
        elif isinstance(value, dict) and known[key]:
            unknown += _unknown_keys(value, known[key], f"{prefix}{key}.")
    return unknown


def _leaves(
    tree: dict[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def _dig(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _check_bentoml_config(text: str, tmp_path: Path) -> dict[str, Any]:
    """Load the config the two ways `bentoml serve` does; every setting must take effect.

    Returns the per-service configuration the services end up with.
    """
    given = yaml.safe_load(text)
    known = _schema_keys(SERVICE_CONFIG_SCHEMA)
    unknown = []
    for key, value in given["services"].items():
        if key in SERVICES:
            unknown += _unknown_keys(value, known, f"services.{key}.")
        else:
            unknown += _unknown_keys({key: value}, known, "services.")
    assert not unknown, f"keys BentoML does not know: {unknown}"

    path = tmp_path / "bentoml_config.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        # The CLI's import-time pass (containers.py: load_config() with the v1 schema).
        BentoMLConfiguration(override_config_file=str(path), use_version=1)
        # The service's pass (Service.inject_config): decorator values are the defaults.
        defaults = {"services": {n: (c or {"workers": 1}) for n, c in SERVICES.items()}}
        merged = BentoMLConfiguration(
            override_config_file=str(path), override_defaults=defaults, use_version=2
        ).to_dict()["services"]
    except BentoMLConfigException as e:
        pytest.fail(f"BentoML refuses the config: {e}")

    for leaf, given_value in _leaves(given["services"]):
        value = expand_env_var(given_value)  # BentoML expands ${VAR} in every value it loads
        if leaf[0] in SERVICES:
            assert _dig(merged[leaf[0]], leaf[1:]) == value, ".".join(leaf)
        else:
            for name in SERVICES:
                assert _dig(merged[name], leaf) == value, (
                    f"services.{'.'.join(leaf)} is overridden by {name}'s decorator; "
                    f"set it under services.{name}"
                )
    return merged


def _validate(doc: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for {version}: {e.message}")


# --- schema validation -------------------------------------------------------------------


def test_layout_is_found() -> None:
    assert OVERLAYS, "no overlay under deploy/k8s/overlays"
    assert {p.name for p in _resource_files()} >= {
        "deployment.yaml",
        "service.yaml",
        "hpa.yaml",
        "pdb.yaml",
    }


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", _resource_files(), ids=_ids(_resource_files()))
def test_manifest_file_is_schema_valid(path: Path, version: str) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    assert docs
    for doc in docs:
        _validate(doc, version)


@needs_kubectl
@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_rendered_output_is_schema_valid(path: Path, version: str) -> None:
    docs = render(path)
    assert {d["kind"] for d in docs} >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
    }
    for doc in docs:
        if doc["kind"] not in OPERATOR_KINDS:
            _validate(doc, version)


def test_strict_validation_rejects_a_wrong_field() -> None:
    """Guards the guard: a probe port given as a number-like string is a real, past mistake."""
    deployment = yaml.safe_load((BASE / "deployment.yaml").read_text(encoding="utf-8"))
    probe = _container(deployment)["readinessProbe"]
    probe["httpGet"]["prot"] = probe["httpGet"].pop("port")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("path", _config_files(), ids=_ids(_config_files()))
def test_bentoml_config_takes_effect(path: Path, tmp_path: Path) -> None:
    merged = _check_bentoml_config(path.read_text(encoding="utf-8"), tmp_path)
    assert set(merged) >= set(SERVICES)


def test_config_check_catches_a_version_2_key(tmp_path: Path) -> None:
    text = "version: 2\nservices:\n  logging:\n    access:\n      enabled: true\n"
    with pytest.raises(pytest.fail.Exception, match="refuses"):
        _check_bentoml_config(text, tmp_path)


def test_config_check_catches_a_shadowed_key(tmp_path: Path) -> None:
    service, config = next((n, c) for n, c in SERVICES.items() if c.get("workers"))
    text = f"services:\n  workers: {config['workers'] + 1}\n"
    with pytest.raises(AssertionError, match=f"set it under services.{service}"):
        _check_bentoml_config(text, tmp_path)


def test_config_check_catches_a_typo(tmp_path: Path) -> None:
    text = "services:\n  trafic:\n    timeout: 5\n"
    with pytest.raises(AssertionError, match=r"services\.trafic"):
        _check_bentoml_config(text, tmp_path)


# --- wiring ------------------------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_selectors_and_references_line_up(path: Path) -> None:
    docs = render(path)
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]

    def selects_pods(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= pod_labels.items()

    assert selects_pods(deployment["spec"]["selector"]["matchLabels"])
    assert selects_pods(one(docs, "Service")["spec"]["selector"])
    assert selects_pods(one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    target = one(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])

    container = _container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == 3000  # BentoML's default serving port, EXPOSEd by the image
    assert one(docs, "Service")["spec"]["ports"][0]["targetPort"] in ports
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["http"]
    assert annotations["prometheus.io/path"] == "/metrics"

    account = pod["spec"]["serviceAccountName"]
    assert any(d["kind"] == "ServiceAccount" and d["metadata"]["name"] == account for d in docs)


@needs_kubectl
@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_probes_use_bentoml_health_endpoints(path: Path) -> None:
    container = _container(one(render(path), "Deployment"))
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    startup = container["startupProbe"]
    # Liveness must not kill a pod that is still loading: start-up gets its own, longer budget.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


@needs_kubectl
@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_config_map_is_mounted_where_bentoml_config_points(path: Path, tmp_path: Path) -> None:
    docs = render(path)
    deployment = one(docs, "Deployment")
    container = _container(deployment)
    config_path = Path(_env(container)["BENTOML_CONFIG"])
    assert config_path.suffix in {".yaml", ".yml"}  # BentoML refuses other suffixes
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mount = next(m for m in container["volumeMounts"] if config_path.parent == Path(m["mountPath"]))
    config_map_name = volumes[mount["name"]]["configMap"]["name"]
    config_map = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == config_map_name
    )
    _check_bentoml_config(config_map["data"][config_path.name], tmp_path)


@needs_kubectl
@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_every_write_path_is_a_volume(path: Path) -> None:
    """The root filesystem is read-only; each place BentoML writes must be a mounted volume."""
    docs = render(path)
    deployment = one(docs, "Deployment")
    container = _container(deployment)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    for mount in container["volumeMounts"]:
        assert mount["name"] in volumes, f"mount {mount['name']} has no volume"
    writable = [
        Path(m["mountPath"])
        for m in container["volumeMounts"]
        if not m.get("readOnly")
        and volumes[m["name"]].keys() & {"emptyDir", "persistentVolumeClaim"}
    ]
    for volume in volumes.values():
        if "emptyDir" in volume:
            assert volume["emptyDir"].get("sizeLimit"), "an unbounded emptyDir can fill the node"

    env = _env(container)
    needs_writing = [
        Path("/tmp"),  # sockets and temporary files of the server processes
        Path(env["BENTOML_HOME"]),  # temporary store, Prometheus multiprocess dir
    ]
    if "CREDIT_RISK_DECISION_STORE_FILE" not in env and "CREDIT_RISK_DECISION_STORE" not in env:
        needs_writing.append(Path(env["BENTOML_HOME"]) / "decisions.sqlite")  # the default
    for needed in needs_writing:
        assert needed.is_absolute(), f"{needed} would resolve inside the read-only bento"
        assert any(needed.is_relative_to(w) for w in writable), f"{needed} is not writable"


@needs_kubectl
@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_no_shared_decision_log_volume(path: Path) -> None:
    """Decisions go to the decision store, not to files on a volume shared by the pods."""
    docs = render(path)
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    config = yaml.safe_load(next(iter(config_map["data"].values())))
    assert "monitoring" not in config["services"]["credit_risk_service"]


@needs_kubectl
@pytest.mark.parametrize("path", OVERLAYS, ids=_ids(OVERLAYS))
def test_the_decision_store_url_is_read_from_a_mounted_secret(path: Path) -> None:
    """The store's URL (and its password) comes from a Secret mounted as a file, never from
    an environment variable's value in the manifests."""
    deployment = one(render(path), "Deployment")
    container = _container(deployment)
    env = _env(container)
    assert "CREDIT_RISK_DECISION_STORE" not in env
    url_file = Path(env["CREDIT_RISK_DECISION_STORE_FILE"])
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if url_file.is_relative_to(m["mountPath"])]
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "credit-risk-decision-store"
    keys = {item["path"]: item["key"] for item in secret["items"]}
    assert keys[str(url_file.relative_to(mount["mountPath"]))] == "url"
    assert secret["defaultMode"] & 0o007 == 0, "not readable by other users"


EXAMPLES = K8S_DIR / "examples"


@needs_kubectl
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_postgresql_statefulset_example_renders_and_validates(version: str) -> None:
    docs = render(EXAMPLES / "postgres")
    assert {d["kind"] for d in docs} == {"Service", "StatefulSet"}
    for doc in docs:
        _validate(doc, version)
    statefulset = one(docs, "StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "POSTGRES_PASSWORD" not in _env(container), "the password comes from a Secret file"
    service = one(docs, "Service")
    assert service["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"]


# --- security and capacity ---------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_pod_runs_restricted(path: Path) -> None:
    """What the `restricted` Pod Security Standard asks, with the image's own user."""
    pod_spec = one(render(path), "Deployment")["spec"]["template"]["spec"]
    pod_ctx = pod_spec["securityContext"]
    assert pod_ctx["runAsNonRoot"] is True
    assert IMAGE_UID >= 10_000, "a high UID maps to no account on the node"
    assert pod_ctx["runAsUser"] == IMAGE_UID
    assert pod_ctx["runAsGroup"] == IMAGE_UID
    assert pod_ctx["fsGroup"] == IMAGE_UID
    assert pod_ctx["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod_spec["automountServiceAccountToken"] is False
    for container in pod_spec["containers"]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx.get("privileged", False) is False
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["capabilities"]["drop"] == ["ALL"]
        assert not ctx["capabilities"].get("add")


@needs_kubectl
@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_resources_and_scaling_are_coherent(path: Path) -> None:
    docs = render(path)
    deployment = one(docs, "Deployment")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    resources = _container(deployment)["resources"]
    requests, limits = resources["requests"], resources["limits"]
    assert 0 < _cpu(requests["cpu"]) <= _cpu(limits["cpu"])
    assert 0 < _memory(requests["memory"]) <= _memory(limits["memory"])

    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
    assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert 0 < metric["resource"]["target"]["averageUtilization"] <= 100

    pdb = one(docs, "PodDisruptionBudget")["spec"]
    # A drain must be able to make progress at the minimum replica count.
    if "maxUnavailable" in pdb:
        assert 1 <= pdb["maxUnavailable"] < hpa["minReplicas"]
    else:
        assert pdb["minAvailable"] < hpa["minReplicas"]

    strategy = deployment["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


@needs_kubectl
def test_base_runs_the_bento_image() -> None:
    container = _container(one(render(BASE), "Deployment"))
    assert container["image"].split(":")[0] == IMAGE_NAME


@needs_kubectl
@pytest.mark.parametrize("path", OVERLAYS, ids=_ids(OVERLAYS))
def test_overlay_pins_a_registry_image_in_a_restricted_namespace(path: Path) -> None:
    docs = render(path)
    image = _container(one(docs, "Deployment"))["image"]
    repository, _, digest = image.partition("@")
    assert repository.endswith("/" + IMAGE_NAME), image
    assert "." in repository.split("/")[0], f"no registry host in {image}"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"not pinned by digest: {image}"
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    assert len(namespaces) == 1
    name = namespaces[0]["metadata"]["name"]
    assert namespaces[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == name


@needs_kubectl
@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_tokens_come_from_a_required_secret_mounted_as_a_file(path: Path) -> None:
    pod_spec = one(render(path), "Deployment")["spec"]["template"]["spec"]
    container = _container({"spec": {"template": {"spec": pod_spec}}})
    assert not any("valueFrom" in e and "secretKeyRef" in e["valueFrom"] for e in container["env"])
    tokens_file = Path(_env(container)["CREDIT_RISK_API_TOKENS_FILE"])
    (mount,) = [m for m in container["volumeMounts"] if tokens_file.parent == Path(m["mountPath"])]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod_spec["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "credit-risk-api-tokens"
    assert volume["secret"].get("optional", False) is False, "a missing Secret stops the pod"
    assert all("optional" not in str(e) for e in container["env"])


def _peers(rules: list[dict[str, Any]], side: str) -> list[dict[str, list[str]]]:
    """Each peer of a policy's rules as {selector kind: the values its one expression allows}."""
    peers = []
    for rule in rules:
        for peer in rule[side]:
            assert "matchLabels" not in peer.get("podSelector", {}), "kustomize rewrites those"
            peers.append(
                {
                    kind: [v for e in peer[kind]["matchExpressions"] for v in e["values"]]
                    for kind in ("namespaceSelector", "podSelector")
                    if kind in peer
                }
            )
    return peers


@needs_kubectl
@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_network_policy_lets_in_the_ingress_and_prometheus_and_out_dns_and_the_database(
    path: Path,
) -> None:
    docs = render(path)
    policy = one(docs, "NetworkPolicy")["spec"]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert _peers(policy["ingress"], "from") == [
        {"namespaceSelector": ["ingress-nginx"], "podSelector": ["ingress-nginx"]},
        {"namespaceSelector": ["monitoring"], "podSelector": ["prometheus"]},
    ]
    assert [p["port"] for r in policy["ingress"] for p in r["ports"]] == ["http"]
    assert _peers(policy["egress"], "to") == [
        {"namespaceSelector": ["kube-system"], "podSelector": ["kube-dns"]},
        {"podSelector": ["credit-risk-postgres"]},
    ]
    assert sorted(p["port"] for r in policy["egress"] for p in r["ports"]) == [53, 53, 5432]


PRODUCTION = K8S_DIR / "overlays" / "production"


@needs_kubectl
def test_the_production_ingress_limits_each_client_in_front_of_the_service() -> None:
    """What tests/service/test_ingress_limits.py serves behind nginx: per-client limits, the
    service's own body limit, and the way to the Service's port."""
    docs = render(PRODUCTION)
    ingress = one(docs, "Ingress")
    limits = IngressLimits.from_annotations(ingress["metadata"]["annotations"])
    assert 0 < limits.connections <= 64
    assert limits.rps > 0
    assert nginx_size_bytes(limits.body_size) == MAX_BODY_BYTES
    assert limits.read_timeout_s > REQUEST_TIMEOUT_S
    assert UPSTREAM_KEEPALIVE_S < KEEP_ALIVE_TIMEOUT_S, "nginx drops an idle connection first"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    assert ingress["spec"]["tls"] == [{"hosts": [rule["host"]], "secretName": "credit-risk-tls"}]
    (path,) = rule["http"]["paths"]
    service = one(docs, "Service")
    assert path["backend"]["service"] == {
        "name": service["metadata"]["name"],
        "port": {"name": service["spec"]["ports"][0]["name"]},
    }
    assert (path["path"], path["pathType"]) == ("/", "Prefix")


CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
"""checkov in a virtualenv of its own (`make checkov`): its pins would move the runtime lock's."""


@needs_kubectl
@pytest.mark.parametrize("path", OVERLAYS, ids=_ids(OVERLAYS))
def test_checkov_passes_on_the_rendered_overlay(path: Path, tmp_path: Path) -> None:
    """Every exception is a `checkov.io/skip` annotation beside the check, with its reason."""
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} missing: `make checkov` installs it")
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(
        subprocess.run(
            [str(KUBECTL), "kustomize", str(path)], capture_output=True, text=True, check=True
        ).stdout
    )
    run = subprocess.run(
        [str(CHECKOV), "-f", str(rendered), "--framework", "kubernetes", "--compact"]
        + ["--quiet", "--skip-download", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(run.stdout)
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['resource']})"
        for c in report["results"]["failed_checks"]
    ]
    print(f"\ncheckov on {path.name}: {summary['passed']} passed, {summary['failed']} failed")
    assert failed == [], failed
    assert summary["passed"] > 80
    for skipped in report["results"].get("skipped_checks", []):
        assert skipped.get("suppress_comment"), f"{skipped['check_id']} skipped without a reason"
