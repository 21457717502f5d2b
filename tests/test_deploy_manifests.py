"""deploy/: the kustomize base renders, every object is a valid Kubernetes object (parsed by the official
client's models, with no field lost on the way), and the pieces agree with each other and with pitcrew's
config: security settings, probes, ports, volumes, secrets, namespaces."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient

from bot.app import WEBHOOK_PATH
from bot.config import Config, load_config
from tests.support.deploy import DEPLOY_DIR, find, only, render

# kind -> (apiVersion, model class name of the official client)
BUILTIN_KINDS = {
    "Namespace": ("v1", "V1Namespace"),
    "ServiceAccount": ("v1", "V1ServiceAccount"),
    "ConfigMap": ("v1", "V1ConfigMap"),
    "Service": ("v1", "V1Service"),
    "PersistentVolumeClaim": ("v1", "V1PersistentVolumeClaim"),
    "Deployment": ("apps/v1", "V1Deployment"),
    "Role": ("rbac.authorization.k8s.io/v1", "V1Role"),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "V1RoleBinding"),
    "ClusterRole": ("rbac.authorization.k8s.io/v1", "V1ClusterRole"),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io/v1", "V1ClusterRoleBinding"),
    "NetworkPolicy": ("networking.k8s.io/v1", "V1NetworkPolicy"),
}
OPERATOR_KINDS = {"PrometheusRule", "ServiceMonitor"}


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def config_text() -> str:
    return (DEPLOY_DIR / "config.yaml").read_text()


def secret_env_names(config_text: str) -> set[str]:
    """The variables deploy/config.yaml's (uncommented) *_env keys name."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if str(key).endswith("_env"):
                    found.add(str(value))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(config_text))
    return found


@pytest.fixture(scope="module")
def config(config_text: str, tmp_path_factory: pytest.TempPathFactory) -> Config:
    env = {name: "value-for-test" for name in secret_env_names(config_text)}
    return load_config(DEPLOY_DIR / "config.yaml", env=env)


@pytest.fixture(scope="module")
def deployment(rendered: list[dict[str, Any]]) -> Mapping[str, Any]:
    return only(rendered, "Deployment", "pitcrew")


@pytest.fixture(scope="module")
def container(deployment: Mapping[str, Any]) -> Mapping[str, Any]:
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(main, Mapping)
    return main


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def parse_as_model(obj: Mapping[str, Any]) -> Any:
    """The object as the official client's model; raises if it does not validate or if any field was
    dropped on the way (a misspelt or misplaced key), which the models alone silently ignore."""
    api_version, model = BUILTIN_KINDS[obj["kind"]]
    assert obj["apiVersion"] == api_version
    client = ApiClient()
    parsed = client.deserialize(json.dumps(obj), model, "application/json")
    round_trip = _without_nulls(client.sanitize_for_serialization(parsed))  # type: ignore[no-untyped-call]
    assert round_trip == obj, f"{obj['kind']} {obj['metadata']['name']}: fields lost in parsing"
    return parsed


def test_base_renders_the_expected_objects(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted((o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in rendered)
    config_map = only(rendered, "ConfigMap")["metadata"]["name"]
    assert kinds == sorted(
        [
            ("Namespace", "", "pitcrew"),
            ("ServiceAccount", "pitcrew", "pitcrew"),
            ("ClusterRole", "", "pitcrew-cluster-read"),
            ("ClusterRoleBinding", "", "pitcrew-cluster-read"),
            ("Role", "monitoring", "pitcrew"),
            ("RoleBinding", "monitoring", "pitcrew"),
            ("ConfigMap", "pitcrew", config_map),
            ("PersistentVolumeClaim", "pitcrew", "pitcrew-data"),
            ("Deployment", "pitcrew", "pitcrew"),
            ("Service", "pitcrew", "pitcrew"),
            ("NetworkPolicy", "pitcrew", "pitcrew"),
            ("PrometheusRule", "pitcrew", "pitcrew"),
            ("ServiceMonitor", "pitcrew", "pitcrew"),
        ]
    )
    # The generated ConfigMap carries a content hash, so a config edit rolls the Deployment.
    assert re.fullmatch(r"pitcrew-config-[a-z0-9]{10}", config_map)


def test_every_builtin_object_parses_into_the_kubernetes_models(rendered: list[dict[str, Any]]) -> None:
    builtin = [o for o in rendered if o["kind"] not in OPERATOR_KINDS]
    assert {o["kind"] for o in builtin} == set(BUILTIN_KINDS)
    for obj in builtin:
        model = parse_as_model(obj)
        assert model.metadata.name == obj["metadata"]["name"]


def test_the_lost_field_check_catches_a_misspelt_key(deployment: Mapping[str, Any]) -> None:
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {"privileged": True}
    with pytest.raises(AssertionError, match="fields lost"):
        parse_as_model(broken)


def test_no_secret_is_rendered_and_the_example_is_placeholders_only(rendered: list[dict[str, Any]]) -> None:
    assert find(rendered, "Secret") == []
    example = yaml.safe_load((DEPLOY_DIR / "secret.example.yaml").read_text())
    assert example["kind"] == "Secret" and example["metadata"]["namespace"] == "pitcrew"
    for key, value in example["stringData"].items():
        assert "REPLACE" in value, f"secret.example.yaml {key} looks like a real value"
    assert (
        "secret.example.yaml"
        not in yaml.safe_load((DEPLOY_DIR / "kustomization.yaml").read_text())["resources"]
    )


def test_deployment_security_settings(deployment: Mapping[str, Any], container: Mapping[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0 and pod["securityContext"]["runAsGroup"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "add" not in sc["capabilities"]
    assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True
    assert pod["serviceAccountName"] == "pitcrew"
    # The namespace enforces the "restricted" Pod Security Standard: only its volume types.
    restricted_volume_types = {"configMap", "secret", "persistentVolumeClaim", "emptyDir", "projected"}
    for volume in pod["volumes"]:
        assert set(volume) - {"name"} <= restricted_volume_types, volume


def test_image_user_matches_the_pod_security_context(deployment: Mapping[str, Any]) -> None:
    dockerfile = (DEPLOY_DIR.parent / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    pod_sc = deployment["spec"]["template"]["spec"]["securityContext"]
    assert (
        (int(user[0]), int(user[1]))
        == (pod_sc["runAsUser"], pod_sc["runAsGroup"])
        == (
            pod_sc["fsGroup"],
            pod_sc["fsGroup"],
        )
    )


def test_single_writer_rollout_and_resources(
    deployment: Mapping[str, Any], container: Mapping[str, Any]
) -> None:
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    resources = container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert "memory" in resources["limits"]
    assert _mebibytes(resources["limits"]["memory"]) >= _mebibytes(resources["requests"]["memory"])


def _mebibytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert match, quantity
    return int(match[1]) * (1024 if match[2] == "Gi" else 1)


def test_memory_request_is_the_documented_measurement(container: Mapping[str, Any]) -> None:
    text = (DEPLOY_DIR / "deployment.yaml").read_text()
    measured = re.search(r"measured: RSS (\d+) MiB", text)
    assert measured, "deployment.yaml must document the measured memory (deploy/measure_memory.py)"
    rss = int(measured[1])
    request = _mebibytes(container["resources"]["requests"]["memory"])
    limit = _mebibytes(container["resources"]["limits"]["memory"])
    assert rss <= request < limit, "request covers the measured RSS; the limit leaves headroom above it"


def test_probes_ports_and_grace_period_match_the_app_and_config(
    deployment: Mapping[str, Any], container: Mapping[str, Any], config: Config
) -> None:
    (port,) = container["ports"]
    assert port["containerPort"] == config.server.listen_port and port["name"] == "http"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # bot/cli/serve.py bounds shutdown by shutdown_timeout_seconds + 5 s of cleanup; the kubelet waits longer.
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > config.server.shutdown_timeout_seconds + 5
    assert config.server.listen_host == "0.0.0.0"


def test_routes_the_manifests_use_are_served_by_the_app() -> None:
    from bot.app import create_app

    app = create_app(Config(), insecure_no_webhook_auth=True)
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert {"/healthz", "/readyz", "/metrics", WEBHOOK_PATH} <= paths


def test_config_volume_and_store_paths(
    rendered: list[dict[str, Any]],
    container: Mapping[str, Any],
    deployment: Mapping[str, Any],
    config: Config,
) -> None:
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    # The config file the container is told to read is the generated ConfigMap's key.
    config_arg = container["args"][container["args"].index("--config") + 1]
    config_mount = mounts[str(Path(config_arg).parent)]
    assert config_mount["readOnly"] is True
    config_map = volumes[config_mount["name"]]["configMap"]["name"]
    assert Path(config_arg).name in only(rendered, "ConfigMap", config_map)["data"]
    assert (
        only(rendered, "ConfigMap", config_map)["data"]["config.yaml"]
        == (DEPLOY_DIR / "config.yaml").read_text()
    )
    # The store and the backups live on the PVC; /tmp is a bounded emptyDir.
    data = mounts["/var/lib/pitcrew"]
    assert volumes[data["name"]]["persistentVolumeClaim"]["claimName"] == "pitcrew-data"
    only(rendered, "PersistentVolumeClaim", "pitcrew-data")
    assert Path(config.store.path).is_relative_to("/var/lib/pitcrew")
    assert Path(config.remediation.backup_dir).is_relative_to("/var/lib/pitcrew")
    assert "sizeLimit" in volumes[mounts["/tmp"]["name"]]["emptyDir"]
    # Every writable mount is a volume meant for writing; everything else is read-only.
    for path, mount in mounts.items():
        if path not in ("/var/lib/pitcrew", "/tmp"):
            assert mount.get("readOnly") is True, path


def test_secret_env_vars_are_the_ones_config_names(config_text: str, container: Mapping[str, Any]) -> None:
    from_secret = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    # Every variable the config names comes from the Secret...
    assert secret_env_names(config_text) <= set(from_secret)
    # ...and so does every one config.yaml mentions in a comment, ready to uncomment.
    commented = set(re.findall(r"#\s*\w+_env: (\w+)", config_text))
    assert set(from_secret) == secret_env_names(config_text) | commented
    example = yaml.safe_load((DEPLOY_DIR / "secret.example.yaml").read_text())
    assert {ref["name"] for ref in from_secret.values()} == {example["metadata"]["name"]}
    assert {ref["key"] for ref in from_secret.values()} == set(example["stringData"])
    # No secret is ever a plain value in the manifest.
    assert all("value" not in e for e in container["env"] if e["name"] in from_secret)


def test_service_and_network_policy_select_the_pod(
    rendered: list[dict[str, Any]], deployment: Mapping[str, Any], container: Mapping[str, Any]
) -> None:
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = only(rendered, "Service", "pitcrew")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    policy = only(rendered, "NetworkPolicy", "pitcrew")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    allowed = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert allowed == [c["name"] for c in container["ports"]] == ["http"]


def test_monitored_namespaces_match_the_roles(rendered: list[dict[str, Any]], config: Config) -> None:
    role_namespaces = {r["metadata"]["namespace"] for r in find(rendered, "Role")}
    binding_namespaces = {r["metadata"]["namespace"] for r in find(rendered, "RoleBinding")}
    assert role_namespaces == binding_namespaces == set(config.cluster.namespaces)
    assert config.cluster.in_cluster is True


def test_service_monitor_scrapes_the_metrics_port(rendered: list[dict[str, Any]]) -> None:
    monitor = only(rendered, "ServiceMonitor", "pitcrew")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = only(rendered, "Service", "pitcrew")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] and endpoint["path"] == "/metrics"


def _copy_deploy(tmp_path: Path) -> Path:
    target = tmp_path / "deploy"
    shutil.copytree(DEPLOY_DIR, target)
    return target


def test_without_the_prometheus_operator_component(tmp_path: Path) -> None:
    # README: "no Prometheus Operator? delete the components: entry".
    copy = _copy_deploy(tmp_path)
    kustomization = copy / "kustomization.yaml"
    text = kustomization.read_text()
    assert "components:\n  - prometheus-operator\n" in text
    kustomization.write_text(text.replace("components:\n  - prometheus-operator\n", ""))
    objects = render(copy)
    assert not [o for o in objects if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert only(objects, "Deployment", "pitcrew")


def test_a_broken_kustomization_fails_to_render(tmp_path: Path) -> None:
    copy = _copy_deploy(tmp_path)
    (copy / "service.yaml").unlink()
    with pytest.raises(RuntimeError, match=r"service\.yaml"):
        render(copy)


def test_the_commented_examples_in_config_are_valid_when_uncommented(
    config_text: str, tmp_path: Path
) -> None:
    # Lines like "# hosts:" / "#   - name: node-1" / "  # app_token_env: X" are examples to uncomment.
    example_line = re.compile(r"^(\s*)# ?(\s*(?:[a-z_]+:(?:\s.*)?|- .*))$")
    lines = []
    for line in config_text.splitlines():
        match = example_line.match(line)
        lines.append(match[1] + match[2] if match else line)
    uncommented = "\n".join(lines) + "\n"
    for section in ("hosts:", "alertmanager:", "schedules:", "  app_token_env:", "  grafana_token_env:"):
        assert f"\n{section}" in uncommented, section
    path = tmp_path / "config.yaml"
    path.write_text(uncommented)
    config = load_config(path, env={name: "x" for name in secret_env_names(uncommented)})
    assert config.hosts[0].client_key_file.startswith("/etc/pitcrew/ssh/")
    assert config.schedules and config.alertmanager.url
