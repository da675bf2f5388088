"""deploy/kubernetes: the Kustomize base renders, every object is valid for the Kubernetes API
(the ServiceMonitor for the Prometheus Operator's CRD), and the manifests agree with the gateway
they run: its probe routes and port, its drain time, its config and the Secret keys it reads.

Offline: `kubectl kustomize` renders (the test skips, saying so, where kubectl is missing), the
API schemas come with the `kubernetes-validate` package, the CRD is vendored in `schemas/`.
"""

from __future__ import annotations

import base64
import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema_rs
import kubernetes_validate
import pytest
import yaml

from stellara.assembly.config import parse_config
from stellara.config.models import StellaraConfig
from stellara.server.routes.metrics import ROUTES as METRICS_ROUTES
from stellara.server.routes.probes import ROUTES as PROBE_ROUTES
from stellara.server.serve import SHUTDOWN_GRACE_S

ROOT = Path(__file__).parents[2]
BASE = ROOT / "deploy" / "kubernetes"
SCHEMAS = Path(__file__).parent / "schemas"
SERVICE_MONITOR_CRD = SCHEMAS / "monitoring.coreos.com_servicemonitors.yaml"
# The oldest release with the preStop `sleep` action, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
CUSTOM_KINDS = {"ServiceMonitor"}

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def manifests() -> list[Manifest]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "kubectl is not installed, so deploy/kubernetes is not rendered or checked "
            "(install kubectl 1.27 or newer: Debian's kubernetes-client is too old for it)"
        )
    rendered = subprocess.run(
        [kubectl, "kustomize", str(BASE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    return [manifest for manifest in yaml.safe_load_all(rendered.stdout) if manifest]


def one(manifests: list[Manifest], kind: str) -> Manifest:
    [found] = [manifest for manifest in manifests if manifest["kind"] == kind]
    return found


def container(manifests: list[Manifest]) -> Manifest:
    gateway: Manifest
    [gateway] = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    return gateway


def secret_values(manifests: list[Manifest]) -> dict[str, str]:
    data = one(manifests, "Secret")["data"]
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def pod_environment(manifests: list[Manifest]) -> dict[str, str]:
    """The gateway's environment as the Deployment sets it from the example Secret."""
    secret = secret_values(manifests)
    return {
        variable["name"]: secret[variable["valueFrom"]["secretKeyRef"]["key"]]
        for variable in container(manifests)["env"]
    }


def mounted_config(manifests: list[Manifest]) -> StellaraConfig:
    text = one(manifests, "ConfigMap")["data"]["stellara.yaml"]
    return parse_config(text, source="stellara.yaml", environ=pod_environment(manifests))


def closed(schema: Any) -> Any:
    """`schema` with unknown fields refused, as the API server's strict field validation
    (kubectl's default) refuses them, where the CRD does not keep unknown fields on purpose."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items()}
    is_open = schema.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in schema
    if "properties" in schema and not is_open:
        result["additionalProperties"] = False
    return result


def service_monitor_schema() -> Any:
    crd = yaml.safe_load(SERVICE_MONITOR_CRD.read_text(encoding="utf-8"))
    [v1] = [version for version in crd["spec"]["versions"] if version["name"] == "v1"]
    return closed(v1["schema"]["openAPIV3Schema"])


def test_kubernetes_base_renders_every_object_of_a_deployment(manifests: list[Manifest]) -> None:
    assert sorted(manifest["kind"] for manifest in manifests) == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "ServiceMonitor",
    ]
    assert one(manifests, "HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"
    assert one(manifests, "ServiceMonitor")["apiVersion"] == "monitoring.coreos.com/v1"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_objects_valid_against_the_api_schemas(
    manifests: list[Manifest], version: str
) -> None:
    for manifest in manifests:
        if manifest["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_kubernetes_validation_refuses_a_misspelt_field(manifests: list[Manifest]) -> None:
    deployment = copy.deepcopy(one(manifests, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_kubernetes_service_monitor_valid_against_its_crd(manifests: list[Manifest]) -> None:
    schema = service_monitor_schema()
    monitor = one(manifests, "ServiceMonitor")
    jsonschema_rs.Draft7Validator(schema).validate(monitor)
    misspelt = copy.deepcopy(monitor)
    misspelt["spec"]["endpoints"][0]["pth"] = "/metrics"
    assert not jsonschema_rs.Draft7Validator(schema).is_valid(misspelt)


def test_kubernetes_service_monitor_scrapes_the_metrics_route(manifests: list[Manifest]) -> None:
    monitor = one(manifests, "ServiceMonitor")
    service = one(manifests, "Service")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] in {route.path for route in METRICS_ROUTES}
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    selected = monitor["spec"]["selector"]["matchLabels"].items()
    assert selected <= service["metadata"]["labels"].items()


def test_kubernetes_probes_call_the_gateways_probe_routes_on_its_port(
    manifests: list[Manifest],
) -> None:
    gateway = container(manifests)
    probe_paths = {route.path for route in PROBE_ROUTES}
    liveness, readiness = gateway["livenessProbe"]["httpGet"], gateway["readinessProbe"]["httpGet"]
    assert (liveness["path"], readiness["path"]) == ("/healthz", "/readyz")
    assert {liveness["path"], readiness["path"]} <= probe_paths
    ports = {port["name"]: port["containerPort"] for port in gateway["ports"]}
    config = mounted_config(manifests)
    assert ports[liveness["port"]] == ports[readiness["port"]] == config.server.port
    assert config.server.host == "0.0.0.0"  # reachable by the kubelet and the Service


def test_kubernetes_grace_period_outlasts_the_gateways_drain(manifests: list[Manifest]) -> None:
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    pre_stop_s = container(manifests)["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain_s = SHUTDOWN_GRACE_S + mounted_config(manifests).usage_store.shutdown_flush_s
    assert pod["terminationGracePeriodSeconds"] > pre_stop_s + drain_s


def test_kubernetes_config_checks_with_the_example_secret(manifests: list[Manifest]) -> None:
    config = mounted_config(manifests)  # raises ConfigError, every problem listed, if not
    assert config.state.backend == "redis"
    assert config.state.redis_url == secret_values(manifests)["REDIS_URL"]
    assert config.usage_store.url.startswith("postgresql://")


def test_kubernetes_secret_references_name_keys_of_the_example_secret(
    manifests: list[Manifest],
) -> None:
    secret = one(manifests, "Secret")
    references = [variable["valueFrom"]["secretKeyRef"] for variable in container(manifests)["env"]]
    assert references
    for reference in references:
        assert reference["name"] == secret["metadata"]["name"]
        assert reference["key"] in secret["data"]


def test_kubernetes_config_map_is_the_file_the_gateway_is_started_with(
    manifests: list[Manifest],
) -> None:
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    gateway = container(manifests)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    [config_mount] = [
        mount for mount in gateway["volumeMounts"] if "configMap" in volumes[mount["name"]]
    ]
    config_map = one(manifests, "ConfigMap")
    assert volumes[config_mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    [file_name] = config_map["data"]
    config_path = f"{config_mount['mountPath']}/{file_name}"
    assert gateway["command"] == ["stellara", "serve", "--config", config_path]


def test_kubernetes_pod_runs_unprivileged_on_a_read_only_root(manifests: list[Manifest]) -> None:
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    gateway = container(manifests)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert gateway["securityContext"]["readOnlyRootFilesystem"] is True
    assert gateway["securityContext"]["allowPrivilegeEscalation"] is False
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = gateway["volumeMounts"]
    writable = {mount["mountPath"] for mount in mounts if "emptyDir" in volumes[mount["name"]]}
    assert writable == {"/tmp"}  # tempfile's directory: all the gateway writes to disk
    assert gateway["image"] == "stellara:local"


def test_kubernetes_service_pdb_and_hpa_select_the_deployment(manifests: list[Manifest]) -> None:
    deployment = one(manifests, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels
    assert one(manifests, "Service")["spec"]["selector"].items() <= pod_labels
    budget = one(manifests, "PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels
    assert budget["minAvailable"] < deployment["spec"]["replicas"]  # a node drain can proceed
    autoscaler = one(manifests, "HorizontalPodAutoscaler")["spec"]
    target = autoscaler["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert autoscaler["minReplicas"] > budget["minAvailable"]
