"""volume-permission-denied: positives beyond the seed's names, and the false-positive traps."""

from __future__ import annotations

from dataclasses import replace

from bot.diagnose import diagnose
from bot.model import HostCommandStep, PatchStep, Plan, RestartPodStep, WaitReadyStep
from bot.remediation import preflight
from handlers import volume_permission
from handlers.base import HostTarget, Settings
from tests.support.kube import (
    container,
    make_evidence,
    pod,
    pv,
    pvc,
    running,
    terminated,
    waiting,
    workload,
)

PROM_LOCK = (
    'ts=2025-10-09T21:58:00.310Z caller=main.go:1164 level=error err="opening storage failed: '
    'lock DB directory: open /data/lock: permission denied"'
)


def _prometheus(
    namespace: str = "observability", *, status: dict[str, object] | None = None
) -> list[dict[str, object]]:
    labels = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/instance": "metrics"}
    spec = {
        "containers": [
            container(
                "prometheus-server",
                "quay.io/prometheus/prometheus:v2.51.0",
                args=["--storage.tsdb.path=/data"],
                mounts=[("storage-volume", "/data")],
            )
        ],
        "volumes": [
            {
                "name": "storage-volume",
                "persistentVolumeClaim": {"claimName": "storage-volume-metrics-server-0"},
            }
        ],
    }
    return [
        workload("StatefulSet", "metrics-server", namespace, labels=labels, spec=spec, rv="4242"),
        pod(
            "metrics-server-0",
            namespace,
            labels=labels,
            owner=("StatefulSet", "metrics-server"),
            containers=spec["containers"],  # type: ignore[arg-type]
            volumes=spec["volumes"],  # type: ignore[arg-type]
            node="worker-7",
            statuses=[
                status or waiting("prometheus-server", "CrashLoopBackOff", restarts=6, last=terminated())
            ],
        ),
        pvc("storage-volume-metrics-server-0", namespace, volume="pv-metrics"),
        pv(
            "pv-metrics",
            claim=(namespace, "storage-volume-metrics-server-0"),
            local_path="/mnt/disks/metrics",
            node="worker-7",
        ),
    ]


def test_prometheus_tsdb_lock_on_local_pv_with_wrong_host_owner() -> None:
    evidence = make_evidence(
        _prometheus(),
        logs={("observability", "metrics-server-0", "prometheus-server", True): ["starting", PROM_LOCK]},
        hosts={"storage-box": [{"path": "/mnt/disks/metrics", "uid": "0", "gid": "0", "mode": "0755"}]},
    )
    settings = Settings(hosts=(HostTarget(name="storage-box", nodes=("worker-7",)),))
    [finding] = volume_permission.diagnose(evidence, settings)
    assert finding.code == "volume-permission-denied"
    assert "observability/Pod/metrics-server-0" in [str(o) for o in finding.objects]
    assert "open /data/lock: permission denied" in finding.summary
    assert any("open /data/lock: permission denied" in e for e in finding.evidence)
    assert finding.plan is not None
    patch, chown, restart, wait = finding.plan.steps
    assert isinstance(patch, PatchStep) and str(patch.target) == "observability/StatefulSet/metrics-server"
    assert patch.resource_version == "4242"
    # securityContext absent: the patch pins the parent (the pod spec as seen), then adds it.
    assert patch.ops[0].op == "test" and patch.ops[0].path == "/spec/template/spec"
    assert patch.ops[0].value["containers"][0]["name"] == "prometheus-server"
    assert patch.ops[1].op == "add" and patch.ops[1].path == "/spec/template/spec/securityContext"
    assert patch.ops[1].value == {
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "fsGroup": 65534,
        "runAsNonRoot": True,
    }
    assert isinstance(chown, HostCommandStep)
    assert (chown.host, chown.path, chown.uid, chown.gid) == (
        "storage-box",
        "/mnt/disks/metrics",
        65534,
        65534,
    )
    assert str(chown.target) == "PersistentVolume/pv-metrics"
    assert isinstance(restart, RestartPodStep) and isinstance(wait, WaitReadyStep)


def test_a_root_init_container_keeps_running_as_root_under_the_new_pod_security_context() -> None:
    # The chart's init-chown-data runs as root on purpose; a pod-level runAsNonRoot: true alone would
    # make the kubelet refuse it (CreateContainerConfigError), and a plain init container would now
    # run as the new uid: the plan keeps the first working and the evidence says so for the second.
    objects = _prometheus()
    chown = container("init-chown-data", "busybox:1.36", mounts=[("storage-volume", "/data")])
    chown["securityContext"] = {"runAsUser": 0}
    template = objects[0]["spec"]["template"]["spec"]  # type: ignore[index]
    template["initContainers"] = [chown, container("wait-for-config", "busybox:1.36")]
    template["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
    evidence = make_evidence(
        objects, logs={("observability", "metrics-server-0", "prometheus-server", True): [PROM_LOCK]}
    )
    [finding] = volume_permission.diagnose(evidence, Settings())
    assert finding.plan is not None
    patch = finding.plan.steps[0]
    assert isinstance(patch, PatchStep)
    base = "/spec/template/spec/initContainers/0/securityContext"
    assert [o.to_json() for o in patch.ops[2:]] == [
        {"op": "test", "path": base, "value": {"runAsUser": 0}},
        {"op": "add", "path": f"{base}/runAsNonRoot", "value": False},
    ]
    assert any("init container wait-for-config sets no user" in line for line in finding.evidence)
    # Every changed path is pinned by a test op, even without a resourceVersion (executor's rule 4).
    assert preflight(Plan((replace(patch, resource_version=None),)), None) == []


def test_no_host_step_when_host_owner_is_already_right() -> None:
    evidence = make_evidence(
        _prometheus(),
        logs={("observability", "metrics-server-0", "prometheus-server", True): [PROM_LOCK]},
        hosts={"worker-7": [{"path": "/mnt/disks/metrics", "uid": "65534", "gid": "65534", "mode": "0755"}]},
    )
    [finding] = volume_permission.diagnose(evidence, Settings())
    assert finding.plan is not None
    assert [s.action for s in finding.plan.steps] == ["patch", "restart-pod", "wait-ready"]


def test_grafana_not_writable_on_deployment_with_existing_security_context() -> None:
    labels = {"app": "grafana"}
    spec = {
        "securityContext": {"runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            container("grafana", "docker.io/grafana/grafana:11.0.0", mounts=[("storage", "/var/lib/grafana")])
        ],
        "volumes": [{"name": "storage", "persistentVolumeClaim": {"claimName": "grafana"}}],
    }
    objects = [
        workload("Deployment", "grafana", "dashboards", labels=labels, spec=spec, rv="9"),
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": "grafana-6d5f",
                "namespace": "dashboards",
                "ownerReferences": [{"kind": "Deployment", "name": "grafana", "controller": True}],
            },
            "spec": {"template": {"spec": spec}},
        },
        pod(
            "grafana-6d5f-x2x",
            "dashboards",
            labels=labels,
            owner=("ReplicaSet", "grafana-6d5f"),
            containers=spec["containers"],  # type: ignore[arg-type]
            volumes=spec["volumes"],  # type: ignore[arg-type]
            security_context=spec["securityContext"],  # type: ignore[arg-type]
            statuses=[waiting("grafana", "CrashLoopBackOff", restarts=3, last=terminated())],
        ),
        pvc("grafana", "dashboards", volume="pvc-123"),
        pv("pvc-123", claim=("dashboards", "grafana"), csi=True),
    ]
    logs = {
        ("dashboards", "grafana-6d5f-x2x", "grafana", True): [
            "GF_PATHS_DATA='/var/lib/grafana' is not writable.",
            "You may have issues with file permissions, more information here: "
            "http://docs.grafana.org/installation/docker/#migrate-to-v51-or-later",
            "mkdir: can't create directory '/var/lib/grafana/plugins': Permission denied",
        ]
    }
    [finding] = volume_permission.diagnose(make_evidence(objects, logs=logs), Settings())
    assert finding.plan is not None
    patch = finding.plan.steps[0]
    assert isinstance(patch, PatchStep) and str(patch.target) == "dashboards/Deployment/grafana"
    assert patch.ops[0].op == "test" and patch.ops[0].path == "/spec/template/spec/securityContext"
    assert patch.ops[0].value == {"runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
    assert patch.ops[1].value == {
        "runAsUser": 472,
        "runAsGroup": 472,
        "fsGroup": 472,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # A Deployment's pod comes back under a new name: restart, no wait on the old name; no host step (CSI).
    assert [s.action for s in finding.plan.steps] == ["patch", "restart-pod"]
    assert "/var/lib/grafana" in finding.summary


def test_loki_chunks_mkdir_on_hostpath_volume_uses_host_named_like_node() -> None:
    labels = {"app.kubernetes.io/name": "loki"}
    spec = {
        "containers": [
            container(
                "loki",
                "grafana/loki:3.0.0",
                args=["-config.file=/etc/loki/config.yaml"],
                mounts=[("data", "/loki")],
            )
        ],
        "volumes": [{"name": "data", "hostPath": {"path": "/srv/loki", "type": "DirectoryOrCreate"}}],
    }
    objects = [
        workload("StatefulSet", "logs", "logging", labels=labels, spec=spec),
        pod(
            "logs-0",
            "logging",
            labels=labels,
            owner=("StatefulSet", "logs"),
            containers=spec["containers"],  # type: ignore[arg-type]
            volumes=spec["volumes"],  # type: ignore[arg-type]
            node="nas",
            statuses=[waiting("loki", "CrashLoopBackOff", restarts=4, last=terminated())],
        ),
    ]
    logs = {
        ("logging", "logs-0", "loki", True): [
            'level=error ts=2025-10-09T21:58:00Z caller=log.go:223 msg="error running loki" '
            'err="mkdir /loki/chunks: permission denied\\nerror initialising module: store"'
        ]
    }
    hosts = {"nas": [{"path": "/srv/loki", "uid": "0", "gid": "0", "mode": "0700"}]}
    [finding] = volume_permission.diagnose(make_evidence(objects, logs=logs, hosts=hosts), Settings())
    assert finding.plan is not None
    chown = next(s for s in finding.plan.steps if isinstance(s, HostCommandStep))
    assert (chown.host, chown.path, chown.uid) == ("nas", "/srv/loki", 10001)
    assert str(chown.target) == "logging/Pod/logs-0"


def test_trap_old_permission_error_on_container_running_ready_since() -> None:
    status = running(
        "prometheus-server",
        ready=True,
        restarts=2,
        started="2025-10-08T10:00:00Z",
        last=terminated(finished="2025-10-08T09:59:00Z"),
    )
    evidence = make_evidence(
        _prometheus(status=status),
        logs={("observability", "metrics-server-0", "prometheus-server", True): [PROM_LOCK]},
    )
    assert volume_permission.diagnose(evidence, Settings()) == []
    assert diagnose(evidence).findings == ()  # nor a crash-loop or any other alarm


def test_trap_permission_denied_outside_data_volumes() -> None:
    labels = {"app": "exporter"}
    spec = {
        "containers": [
            container("exporter", "prom/node-exporter:v1.7.0", mounts=[("config", "/etc/exporter")])
        ],
        "volumes": [{"name": "config", "configMap": {"name": "exporter"}}],
    }
    objects = [
        workload("DaemonSet", "exporter", "monitoring", labels=labels, spec=spec),
        pod(
            "exporter-abc",
            "monitoring",
            labels=labels,
            owner=("DaemonSet", "exporter"),
            containers=spec["containers"],  # type: ignore[arg-type]
            volumes=spec["volumes"],  # type: ignore[arg-type]
            statuses=[waiting("exporter", "CrashLoopBackOff", restarts=5, last=terminated())],
        ),
    ]
    logs = {
        ("monitoring", "exporter-abc", "exporter", True): [
            "open /var/run/docker.sock: permission denied",
            "open /etc/exporter/web.yml: permission denied",
        ]
    }
    evidence = make_evidence(objects, logs=logs)
    assert volume_permission.diagnose(evidence, Settings()) == []
    # It is still a crash loop, reported as such.
    assert [f.code for f in diagnose(evidence).findings] == ["crash-loop"]


def test_unknown_image_without_host_facts_has_no_automatic_plan() -> None:
    objects = _prometheus()
    objects[0]["spec"]["template"]["spec"]["containers"][0]["image"] = "example.com/tsdb:1"  # type: ignore[index]
    objects[1]["spec"]["containers"][0]["image"] = "example.com/tsdb:1"  # type: ignore[index]
    evidence = make_evidence(
        objects, logs={("observability", "metrics-server-0", "prometheus-server", True): [PROM_LOCK]}
    )
    [finding] = volume_permission.diagnose(evidence, Settings())
    assert finding.plan is None
    assert any("diagnosis.image_uids" in line for line in finding.evidence)


def test_no_automatic_plan_says_why_root_owner_or_settings_already_right() -> None:
    objects = _prometheus()
    objects[0]["spec"]["template"]["spec"]["containers"][0]["image"] = "example.com/tsdb:1"  # type: ignore[index]
    objects[1]["spec"]["containers"][0]["image"] = "example.com/tsdb:1"  # type: ignore[index]
    logs = {("observability", "metrics-server-0", "prometheus-server", True): [PROM_LOCK]}
    root_owned = {"worker-7": [{"path": "/mnt/disks/metrics", "uid": "0", "gid": "0"}]}
    [finding] = volume_permission.diagnose(make_evidence(objects, logs=logs, hosts=root_owned), Settings())
    assert finding.plan is None
    assert finding.evidence[-1].endswith("the directory on worker-7 is owned by root, which does not tell")

    already = _prometheus()
    context = {"runAsUser": 65534, "runAsGroup": 65534, "fsGroup": 65534, "runAsNonRoot": True}
    already[0]["spec"]["template"]["spec"]["securityContext"] = context  # type: ignore[index]
    [finding] = volume_permission.diagnose(make_evidence(already, logs=logs), Settings())
    assert finding.plan is None
    assert finding.evidence[-1].startswith("no automatic fix: the pod already runs as uid 65534 with fsGroup")


def test_unknown_image_takes_the_owner_seen_on_the_host() -> None:
    objects = _prometheus()
    objects[0]["spec"]["template"]["spec"]["containers"][0]["image"] = "example.com/tsdb:1"  # type: ignore[index]
    objects[1]["spec"]["containers"][0]["image"] = "example.com/tsdb:1"  # type: ignore[index]
    evidence = make_evidence(
        objects,
        logs={("observability", "metrics-server-0", "prometheus-server", True): [PROM_LOCK]},
        hosts={"worker-7": [{"path": "/mnt/disks/metrics", "uid": "1500", "gid": "1500"}]},
    )
    [finding] = volume_permission.diagnose(evidence, Settings())
    assert finding.plan is not None
    patch = finding.plan.steps[0]
    assert isinstance(patch, PatchStep) and patch.ops[1].value["runAsUser"] == 1500
    assert not any(isinstance(s, HostCommandStep) for s in finding.plan.steps)  # owner already right


def test_operator_managed_statefulset_is_not_patched() -> None:
    objects = _prometheus()
    objects[0]["metadata"]["ownerReferences"] = [  # type: ignore[index]
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus", "name": "k8s", "controller": True}
    ]
    evidence = make_evidence(
        objects, logs={("observability", "metrics-server-0", "prometheus-server", True): [PROM_LOCK]}
    )
    [finding] = volume_permission.diagnose(evidence, Settings())
    assert finding.plan is None
    assert any("managed by Prometheus k8s" in line for line in finding.evidence)
