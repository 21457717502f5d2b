"""volume-source-missing: the kubelet's FailedMount wording for a missing ConfigMap, Secret, projected
source, key or CSI driver; and the traps (the pod runs now, the object exists, an optional source)."""

from __future__ import annotations

from typing import Any

from bot.diagnose import diagnose
from bot.model import ObjectRef
from handlers import volume_source_missing
from handlers.base import Settings
from tests.support.kube import configmap, container, event, make_evidence, pod, running, waiting, workload

NS = "storefront"
LABELS = {"app.kubernetes.io/name": "checkout", "tier": "web"}


def _stuck_pod(name: str, volumes: list[dict[str, Any]], *, owner: str = "checkout-6b7d9") -> dict[str, Any]:
    return pod(
        name,
        NS,
        labels=LABELS,
        owner=("ReplicaSet", owner),
        containers=[
            container("checkout", "registry.acme.io/checkout:2.3", mounts=[("cfg", "/etc/checkout")])
        ],
        statuses=[waiting("checkout", "ContainerCreating")],
        volumes=volumes,
        phase="Pending",
        node="ip-10-0-3-17",
    )


def _deployment(volumes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    spec = {"containers": [container("checkout", "registry.acme.io/checkout:2.3")], "volumes": volumes}
    return [
        workload("Deployment", "checkout", NS, labels=LABELS, spec=spec, replicas=2),
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": "checkout-6b7d9",
                "namespace": NS,
                "ownerReferences": [{"kind": "Deployment", "name": "checkout", "controller": True}],
            },
        },
    ]


CM_VOLUME = [{"name": "cfg", "configMap": {"name": "checkout-settings"}}]


def test_missing_configmap_names_the_object_pods_and_workload() -> None:
    objects = [
        *_deployment(CM_VOLUME),
        _stuck_pod("checkout-6b7d9-4xk2p", CM_VOLUME),
        _stuck_pod("checkout-6b7d9-9qwer", CM_VOLUME),
        configmap("kube-root-ca.crt", NS, {"ca.crt": "x"}),
        *(
            event(
                ("Pod", NS, p),
                "FailedMount",
                'MountVolume.SetUp failed for volume "cfg" : configmap "checkout-settings" not found',
                count=14,
            )
            for p in ("checkout-6b7d9-4xk2p", "checkout-6b7d9-9qwer")
        ),
    ]
    [finding] = volume_source_missing.diagnose(make_evidence(objects), Settings())
    assert finding.code == "volume-source-missing" and finding.plan is None
    assert finding.objects[0] == ObjectRef("ConfigMap", "checkout-settings", NS)
    assert ObjectRef("Deployment", "checkout", NS) in finding.objects
    assert finding.summary == (
        "2 pods of deployment/checkout cannot mount their volumes: ConfigMap checkout-settings does not exist"
    )
    assert "pods waiting in ContainerCreating: checkout-6b7d9-4xk2p, checkout-6b7d9-9qwer" in finding.evidence
    assert "volumes: cfg" in finding.evidence


def test_missing_secret_and_projected_sources_from_one_event() -> None:
    volumes = [
        {
            "name": "bundle",
            "projected": {
                "sources": [
                    {"configMap": {"name": "edge-routes"}},
                    {"secret": {"name": "edge-tls"}},
                    {"serviceAccountToken": {"path": "token"}},
                ]
            },
        }
    ]
    objects = [
        pod(
            "edge-proxy-0",
            "ingress-edge",
            labels={"app": "edge-proxy"},
            owner=("StatefulSet", "edge-proxy"),
            containers=[container("envoy", "envoyproxy/envoy:v1.31.0")],
            statuses=[waiting("envoy", "ContainerCreating")],
            volumes=volumes,
            phase="Pending",
        ),
        event(
            ("Pod", "ingress-edge", "edge-proxy-0"),
            "FailedMount",
            'MountVolume.SetUp failed for volume "bundle" : [configmap "edge-routes" not found, '
            'secret "edge-tls" not found]',
        ),
    ]
    findings = volume_source_missing.diagnose(make_evidence(objects), Settings())
    assert sorted(f.objects[0] for f in findings) == [
        ObjectRef("ConfigMap", "edge-routes", "ingress-edge"),
        ObjectRef("Secret", "edge-tls", "ingress-edge"),
    ]
    secret = next(f for f in findings if f.objects[0].kind == "Secret")
    assert secret.summary == "1 pod cannot mount their volumes: Secret edge-tls does not exist"
    assert "volumes: bundle" in secret.evidence


def test_missing_key_and_unregistered_csi_driver() -> None:
    objects = [
        pod(
            "reports-7c9-abcde",
            "analytics",
            labels={"app": "reports"},
            containers=[container("reports", "acme/reports:1")],
            statuses=[waiting("reports", "ContainerCreating")],
            volumes=[
                {"name": "creds", "secret": {"secretName": "reports-db", "items": [{"key": "password"}]}},
                {"name": "vault", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": True}},
            ],
            phase="Pending",
            node="worker-b",
        ),
        event(
            ("Pod", "analytics", "reports-7c9-abcde"),
            "FailedMount",
            'MountVolume.SetUp failed for volume "creds" : references non-existent secret key: password',
        ),
        event(
            ("Pod", "analytics", "reports-7c9-abcde"),
            "FailedMount",
            'MountVolume.SetUp failed for volume "vault" : kubernetes.io/csi: mounter.SetUpAt failed to '
            "get CSI client: driver name secrets-store.csi.k8s.io not found in the list of registered "
            "CSI drivers",
        ),
    ]
    findings = {f.objects[0]: f for f in volume_source_missing.diagnose(make_evidence(objects), Settings())}
    key = findings[ObjectRef("Secret", "reports-db", "analytics")]
    assert key.summary.endswith("Secret reports-db has no key password")
    csi = findings[ObjectRef("CSIDriver", "secrets-store.csi.k8s.io")]
    assert csi.summary.endswith("CSI driver secrets-store.csi.k8s.io is not registered on node worker-b")


def test_configmap_volume_missing_from_the_listed_configmaps_without_events() -> None:
    objects = [
        *_deployment(CM_VOLUME),
        _stuck_pod("checkout-6b7d9-4xk2p", CM_VOLUME),
        configmap("unrelated", NS, {"a": "b"}),
    ]
    [finding] = volume_source_missing.diagnose(make_evidence(objects), Settings())
    assert finding.objects[0] == ObjectRef("ConfigMap", "checkout-settings", NS)


def test_it_replaces_the_catch_all_and_crash_findings_in_a_diagnosis() -> None:
    objects = [
        *_deployment(CM_VOLUME),
        _stuck_pod("checkout-6b7d9-4xk2p", CM_VOLUME),
        event(
            ("Pod", NS, "checkout-6b7d9-4xk2p"),
            "FailedMount",
            'MountVolume.SetUp failed for volume "cfg" : configmaps "checkout-settings" not found',
        ),
    ]
    codes = [f.code for f in diagnose(make_evidence(objects)).findings]
    assert codes.count("volume-source-missing") == 1
    assert "container-config-error" not in codes


# -- traps --------------------------------------------------------------------------------------


def test_trap_the_pod_runs_now_old_failedmount_events_are_history() -> None:
    # Helm created the ConfigMap a second after the Deployment: the kubelet's retry mounted it.
    objects = [
        *_deployment(CM_VOLUME),
        pod(
            "checkout-6b7d9-4xk2p",
            NS,
            labels=LABELS,
            owner=("ReplicaSet", "checkout-6b7d9"),
            containers=[container("checkout", "registry.acme.io/checkout:2.3")],
            statuses=[running("checkout", ready=True)],
            volumes=CM_VOLUME,
        ),
        configmap("checkout-settings", NS, {"app.yaml": "port: 8080"}),
        event(
            ("Pod", NS, "checkout-6b7d9-4xk2p"),
            "FailedMount",
            'MountVolume.SetUp failed for volume "cfg" : configmap "checkout-settings" not found',
            count=2,
        ),
    ]
    assert volume_source_missing.diagnose(make_evidence(objects), Settings()) == []
    # A healthy Deployment's status agrees with its one running pod (else the catch-all speaks).
    objects[0]["spec"]["replicas"] = 1
    objects[0]["status"].update(replicas=1, readyReplicas=1, availableReplicas=1)
    assert diagnose(make_evidence(objects)).findings == ()


def test_trap_the_object_exists_now_or_the_source_is_optional() -> None:
    optional = [{"name": "cfg", "configMap": {"name": "checkout-flags", "optional": True}}]
    objects = [
        _stuck_pod("checkout-6b7d9-4xk2p", CM_VOLUME),
        _stuck_pod("checkout-6b7d9-zz9zz", optional),
        configmap("checkout-settings", NS, {"app.yaml": "port: 8080"}),
        event(
            ("Pod", NS, "checkout-6b7d9-4xk2p"),
            "FailedMount",
            'MountVolume.SetUp failed for volume "cfg" : configmap "checkout-settings" not found',
        ),
    ]
    assert volume_source_missing.diagnose(make_evidence(objects), Settings()) == []


def test_trap_configmaps_not_readable_or_not_collected_prove_nothing() -> None:
    objects = [_stuck_pod("checkout-6b7d9-4xk2p", CM_VOLUME)]
    assert volume_source_missing.diagnose(make_evidence(objects), Settings()) == []
    objects.append(configmap("other", NS, {}))
    errors = [f"cannot list configmaps in {NS}: forbidden"]
    assert volume_source_missing.diagnose(make_evidence(objects, errors=errors), Settings()) == []


def test_trap_other_failedmount_reasons_are_not_a_missing_source() -> None:
    objects = [
        _stuck_pod("checkout-6b7d9-4xk2p", [{"name": "data", "persistentVolumeClaim": {"claimName": "x"}}]),
        event(
            ("Pod", NS, "checkout-6b7d9-4xk2p"),
            "FailedMount",
            "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[data]: "
            "timed out waiting for the condition",
        ),
    ]
    assert volume_source_missing.diagnose(make_evidence(objects), Settings()) == []


def _secret(name: str, namespace: str = NS) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}}


SECRET_VOLUME = [{"name": "cfg", "secret": {"secretName": "checkout-keys"}}]


def test_secret_volume_missing_from_the_listed_secrets_without_events() -> None:
    objects = [_stuck_pod("checkout-6b7d9-4xk2p", SECRET_VOLUME), _secret("checkout-db")]
    [finding] = volume_source_missing.diagnose(make_evidence(objects), Settings())
    assert finding.objects[0] == ObjectRef("Secret", "checkout-keys", NS)
    # Secrets of the namespace not listed at all (a bundle without them): absence proves nothing.
    assert volume_source_missing.diagnose(make_evidence(objects[:1]), Settings()) == []


def test_trap_a_secret_that_exists_now_makes_its_failedmount_event_stale() -> None:
    objects = [
        _stuck_pod("checkout-6b7d9-4xk2p", SECRET_VOLUME),
        _secret("checkout-keys"),
        event(
            ("Pod", NS, "checkout-6b7d9-4xk2p"),
            "FailedMount",
            'MountVolume.SetUp failed for volume "cfg" : secret "checkout-keys" not found',
        ),
    ]
    assert volume_source_missing.diagnose(make_evidence(objects), Settings()) == []
