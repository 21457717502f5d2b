"""crash-loop, oom-killed, image-pull-failure, pvc-pending, readiness-probe-failing, node-not-ready,
container-config-error, pod-unschedulable: each positive, and a trap where a naive rule would alarm."""

from __future__ import annotations

from bot.model import PatchStep
from handlers import (
    container_config_error,
    crash_loop,
    image_pull_failure,
    node_not_ready,
    oom_killed,
    pod_unschedulable,
    pvc_pending,
    readiness_probe,
)
from handlers.base import Settings
from tests.support.kube import (
    configmap,
    container,
    event,
    make_evidence,
    node,
    pod,
    pvc,
    running,
    terminated,
    waiting,
    workload,
)

LABELS = {"app": "worker"}


def _app(
    status: dict[str, object], *, memory: str | None = "2Gi", kind: str = "Deployment", **pod_kw: object
) -> list[dict[str, object]]:
    spec = {
        "containers": [
            container("worker", "example.com/worker:1.2", memory_limit=memory, ports=[("http", 8080)])
        ]
    }
    owner = ("StatefulSet", "worker") if kind == "StatefulSet" else ("ReplicaSet", "worker-5d9")
    objects: list[dict[str, object]] = [
        workload(kind, "worker", "jobs", labels=LABELS, spec=spec, rv="31"),
        pod(
            "worker-0" if kind == "StatefulSet" else "worker-5d9-abc",
            "jobs",
            labels=LABELS,
            owner=owner,
            containers=spec["containers"],
            statuses=[status],
            **pod_kw,
        ),  # type: ignore[arg-type]
    ]
    if kind == "Deployment":
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": "worker-5d9",
                    "namespace": "jobs",
                    "ownerReferences": [{"kind": "Deployment", "name": "worker", "controller": True}],
                },
            }
        )
    return objects


def test_crash_loop_quotes_previous_log_and_exit_code() -> None:
    objects = _app(waiting("worker", "CrashLoopBackOff", restarts=7, last=terminated(exit_code=2)))
    logs = {
        ("jobs", "worker-5d9-abc", "worker", True): [
            "booting",
            "FATAL: cannot parse /etc/worker.toml: line 3",
            "bye",
        ]
    }
    [finding] = crash_loop.diagnose(make_evidence(objects, logs=logs), Settings())
    assert finding.code == "crash-loop" and finding.plan is None
    assert "exit code 2" in finding.summary
    assert "previous log: FATAL: cannot parse /etc/worker.toml: line 3" in finding.evidence


def test_crash_loop_trap_restarts_long_ago_and_ready_since() -> None:
    status = running(
        "worker",
        ready=True,
        restarts=12,
        started="2025-10-01T00:00:00Z",
        last=terminated(finished="2025-10-01T00:00:00Z"),
    )
    assert crash_loop.diagnose(make_evidence(_app(status)), Settings()) == []


def test_flapping_container_with_recent_crash_is_a_crash_loop() -> None:
    status = running(
        "worker",
        ready=True,
        restarts=5,
        started="2025-10-09T21:59:00Z",
        last=terminated(finished="2025-10-09T21:58:59Z"),
    )
    [finding] = crash_loop.diagnose(make_evidence(_app(status)), Settings())
    assert finding.severity.value == "warning"


def test_oom_killed_patches_the_limit_with_a_test_op() -> None:
    status = waiting(
        "worker", "CrashLoopBackOff", restarts=3, last=terminated(exit_code=137, reason="OOMKilled")
    )
    [finding] = oom_killed.diagnose(
        make_evidence(_app(status, kind="StatefulSet")), Settings(oom_memory_factor=1.5)
    )
    assert finding.plan is not None
    patch = finding.plan.steps[0]
    assert isinstance(patch, PatchStep) and str(patch.target) == "jobs/StatefulSet/worker"
    path = "/spec/template/spec/containers/0/resources/limits/memory"
    assert [o.to_json() for o in patch.ops] == [
        {"op": "test", "path": path, "value": "2Gi"},
        {"op": "replace", "path": path, "value": "3072Mi"},
    ]
    assert patch.resource_version == "31"
    assert [s.action for s in finding.plan.steps] == ["patch", "restart-pod", "wait-ready"]


def test_oom_killed_init_container_patches_its_limit_in_init_containers() -> None:
    labels = {"app.kubernetes.io/name": "ledger"}
    spec = {
        "initContainers": [container("migrate", "example.com/migrate:7", memory_limit="128Mi")],
        "containers": [container("ledger", "example.com/ledger:7", memory_limit="1Gi")],
    }
    ledger = pod(
        "ledger-0",
        "finance",
        labels=labels,
        owner=("StatefulSet", "ledger"),
        containers=spec["containers"],
        statuses=[waiting("ledger", "PodInitializing")],
        phase="Pending",
    )
    ledger["spec"]["initContainers"] = spec["initContainers"]
    ledger["status"]["initContainerStatuses"] = [
        waiting("migrate", "CrashLoopBackOff", restarts=4, last=terminated(137, "OOMKilled"))
    ]
    objects = [workload("StatefulSet", "ledger", "finance", labels=labels, spec=spec), ledger]
    [finding] = oom_killed.diagnose(make_evidence(objects), Settings(oom_memory_factor=2))
    assert finding.plan is not None
    patch = finding.plan.steps[0]
    path = "/spec/template/spec/initContainers/0/resources/limits/memory"
    assert isinstance(patch, PatchStep) and [o.to_json() for o in patch.ops] == [
        {"op": "test", "path": path, "value": "128Mi"},
        {"op": "replace", "path": path, "value": "256Mi"},
    ]


def test_oom_without_limit_has_no_plan_and_old_oom_is_ignored() -> None:
    status = waiting(
        "worker", "CrashLoopBackOff", restarts=3, last=terminated(exit_code=137, reason="OOMKilled")
    )
    [finding] = oom_killed.diagnose(make_evidence(_app(status, memory=None)), Settings())
    assert finding.plan is None and any("no memory limit" in line for line in finding.evidence)
    old = running(
        "worker",
        ready=True,
        restarts=1,
        last=terminated(exit_code=137, reason="OOMKilled", finished="2025-10-02T00:00:00Z"),
    )
    assert oom_killed.diagnose(make_evidence(_app(old)), Settings()) == []


def test_image_pull_failure_quotes_the_pull_error() -> None:
    objects = _app(
        waiting("worker", "ImagePullBackOff", message='Back-off pulling image "example.com/worker:1.2"')
    )
    objects.append(
        event(
            ("Pod", "jobs", "worker-5d9-abc"),
            "Failed",
            'Failed to pull image "example.com/worker:1.2": manifest unknown',
        )
    )
    [finding] = image_pull_failure.diagnose(make_evidence(objects), Settings())
    assert "ImagePullBackOff" in finding.summary
    assert any("manifest unknown" in line for line in finding.evidence)
    assert image_pull_failure.diagnose(make_evidence(_app(running("worker", ready=True))), Settings()) == []


def test_pvc_pending_with_missing_storage_class() -> None:
    objects = _app(
        waiting("worker", "ContainerCreating"),
        phase="Pending",
        volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
    )
    objects += [
        pvc("data", "jobs", phase="Pending", storage_class="fast-ssd"),
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "standard"},
            "provisioner": "rancher.io/local-path",
        },
        event(
            ("PersistentVolumeClaim", "jobs", "data"),
            "ProvisioningFailed",
            'storageclass.storage.k8s.io "fast-ssd" not found',
        ),
    ]
    [finding] = pvc_pending.diagnose(make_evidence(objects), Settings())
    assert "StorageClass fast-ssd does not exist" in finding.summary
    assert any("ProvisioningFailed" in line for line in finding.evidence)


def test_pvc_pending_trap_running_pod_and_bound_claim() -> None:
    objects = _app(
        running("worker", ready=True), volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]
    )
    objects.append(pvc("data", "jobs", phase="Bound", volume="pv-1"))
    assert pvc_pending.diagnose(make_evidence(objects), Settings()) == []


def test_readiness_probe_failing_names_the_port_mismatch() -> None:
    spec_container = container(
        "worker",
        "example.com/worker:1.2",
        ports=[("http", 8080)],
        readiness={"httpGet": {"path": "/healthz", "port": 9090}},
    )
    objects = [
        pod(
            "worker-1",
            "jobs",
            labels=LABELS,
            containers=[spec_container],
            statuses=[running("worker", ready=False)],
        ),
        event(
            ("Pod", "jobs", "worker-1"),
            "Unhealthy",
            'Readiness probe failed: Get "http://10.1.1.1:9090/healthz": connection refused',
        ),
    ]
    [finding] = readiness_probe.diagnose(make_evidence(objects), Settings())
    assert "port 9090" in finding.summary and "8080" in finding.summary


def test_readiness_trap_old_probe_events_on_a_ready_pod() -> None:
    spec_container = container(
        "worker", "example.com/worker:1.2", readiness={"httpGet": {"path": "/", "port": 8080}}
    )
    objects = [
        pod(
            "worker-1",
            "jobs",
            labels=LABELS,
            containers=[spec_container],
            statuses=[running("worker", ready=True)],
        ),
        event(
            ("Pod", "jobs", "worker-1"),
            "Unhealthy",
            "Readiness probe failed: timeout",
            last="2025-10-01T00:00:00Z",
        ),
    ]
    assert readiness_probe.diagnose(make_evidence(objects), Settings()) == []


def test_node_not_ready_lists_affected_pods() -> None:
    objects = _app(running("worker", ready=False), node="edge-3")
    objects += [
        node(
            "edge-3",
            ready="Unknown",
            reason="NodeStatusUnknown",
            message="Kubelet stopped posting node status.",
        ),
        node("edge-4"),
    ]
    [finding] = node_not_ready.diagnose(make_evidence(objects), Settings())
    assert "edge-3" in finding.summary and "jobs/Pod/worker-5d9-abc" in [str(o) for o in finding.objects]


def test_container_config_error_says_what_is_missing() -> None:
    env = [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "worker-settings", "key": "mode"}}}]
    spec_container = container("worker", "example.com/worker:1.2", env=env)
    status = waiting(
        "worker",
        "CreateContainerConfigError",
        message="couldn't find key mode in ConfigMap jobs/worker-settings",
    )
    objects = [
        pod("worker-1", "jobs", labels=LABELS, containers=[spec_container], statuses=[status]),
        configmap("worker-settings", "jobs", {"other": "x"}),
    ]
    [finding] = container_config_error.diagnose(make_evidence(objects), Settings())
    assert "key mode is missing from ConfigMap worker-settings" in finding.summary
    assert "ConfigMap worker-settings has no key mode (referenced by worker)" in finding.evidence


def test_container_config_error_trap_the_config_arrived_and_the_container_runs() -> None:
    env = [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "worker-settings", "key": "mode"}}}]
    spec_container = container("worker", "example.com/worker:1.2", env=env)
    objects = [
        pod(
            "worker-1",
            "jobs",
            labels=LABELS,
            containers=[spec_container],
            statuses=[running("worker", ready=True)],
        ),
        configmap("worker-settings", "jobs", {"mode": "fast"}),
        event(("Pod", "jobs", "worker-1"), "Failed", 'Error: configmap "worker-settings" not found'),
    ]
    assert container_config_error.diagnose(make_evidence(objects), Settings()) == []


def test_pod_unschedulable_quotes_the_scheduler() -> None:
    message = "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available."
    objects = _app(
        waiting("worker", "ContainerCreating"),
        phase="Pending",
        node="",
        conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        ],
    )
    [finding] = pod_unschedulable.diagnose(make_evidence(objects), Settings())
    assert "3 Insufficient memory" in finding.summary
    assert pod_unschedulable.diagnose(make_evidence(_app(running("worker", ready=True))), Settings()) == []


def test_absence_under_a_forbidden_list_proves_nothing() -> None:
    env = [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "worker-settings", "key": "mode"}}}]
    spec_container = container("worker", "example.com/worker:1.2", env=env)
    status = waiting("worker", "CreateContainerConfigError", message="configmap not ready")
    config_error = [pod("worker-1", "jobs", labels=LABELS, containers=[spec_container], statuses=[status])]
    forbidden = make_evidence(config_error, errors=["cannot list configmaps in jobs: forbidden"])
    [finding] = container_config_error.diagnose(forbidden, Settings())
    assert not any("was not found" in line for line in finding.evidence)
    elsewhere = make_evidence(config_error, errors=["cannot list configmaps in other: forbidden"])
    [finding] = container_config_error.diagnose(elsewhere, Settings())
    assert "ConfigMap worker-settings (referenced by worker) was not found" in finding.evidence

    claim = _app(
        waiting("worker", "ContainerCreating"),
        phase="Pending",
        volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
    )
    unknown = make_evidence(claim, errors=["cannot list persistentvolumeclaims in jobs: forbidden"])
    assert pvc_pending.diagnose(unknown, Settings()) == []
    assert [f.code for f in pvc_pending.diagnose(make_evidence(claim), Settings())] == ["pvc-pending"]
