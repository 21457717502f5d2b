"""Builders for the schedule/summary tests: Kubernetes objects as the API server returns them (plain
dicts, seeded into the kmock emulator or parsed into Evidence), whole healthy or degraded namespaces,
and store rows as the store returns them (`Incident`, `Execution`) for the pure summary tests.

    objs = healthy_namespace("monitoring")            # StatefulSets, pods, Services, Endpoints, PVCs
    evidence = evidence_of(objs, ["monitoring"])      # the same parser the live collector uses
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bot.evidence import Evidence
from bot.k8s_objects import build_evidence, parse_object
from bot.model import Alert, Finding, Incident, IncidentStatus, WorkState
from bot.store import Execution, ExecutionStatus

Obj = dict[str, Any]

APPS = ("prometheus", "loki", "grafana")


def _meta(name: str, namespace: str | None, labels: Mapping[str, str] | None = None, **extra: Any) -> Obj:
    meta: Obj = {"name": name, "uid": f"uid-{namespace}-{name}", "resourceVersion": "7"}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    meta.update(extra)
    return meta


def pod(
    name: str,
    namespace: str = "monitoring",
    *,
    app: str | None = None,
    ready: bool = True,
    restarts: int = 0,
    owner: tuple[str, str] | None = None,
    waiting_reason: str | None = None,
    phase: str = "Running",
    last_exit_code: int = 1,
) -> Obj:
    app = app or name.rsplit("-", 1)[0]
    status: Obj = {
        "name": app,
        "ready": ready,
        "restartCount": restarts,
        "image": f"{app}:1",
        "state": {"waiting": {"reason": waiting_reason}}
        if waiting_reason
        else {"running": {"startedAt": "2026-11-25T08:00:00Z"}},
    }
    if restarts:
        status["lastState"] = {
            "terminated": {
                "reason": "Error",
                "exitCode": last_exit_code,
                "finishedAt": "2026-11-25T07:59:00Z",
            }
        }
    extra: Obj = {}
    if owner is not None:
        extra["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": "u", "controller": True}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(name, namespace, {"app": app}, **extra),
        "spec": {"nodeName": "node-1", "containers": [{"name": app, "image": f"{app}:1"}]},
        "status": {
            "phase": phase,
            "podIP": "10.0.0.1",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [status],
        },
    }


def statefulset(name: str, namespace: str = "monitoring", *, replicas: int = 1, ready: int = 1) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(name, namespace, {"app": name}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "serviceName": name,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": f"{name}:1"}]},
            },
        },
        "status": {"replicas": replicas, "readyReplicas": ready},
    }


def service(name: str, namespace: str = "monitoring", *, port: int = 80) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, {"app": name}),
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": port, "targetPort": port}],
            "clusterIP": "10.96.0.10",
        },
    }


def endpoints(name: str, namespace: str = "monitoring", *, ready: bool = True) -> Obj:
    address = [{"ip": "10.0.0.1", "targetRef": {"kind": "Pod", "name": f"{name}-0"}}]
    subset: Obj = {"ports": [{"port": 80}]}
    subset["addresses" if ready else "notReadyAddresses"] = address
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": _meta(name, namespace),
        "subsets": [subset],
    }


def pvc(name: str, namespace: str = "monitoring", *, phase: str = "Bound") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(name, namespace),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": phase},
    }


def app_objects(
    app: str,
    namespace: str = "monitoring",
    *,
    ready: bool = True,
    restarts: int = 0,
    waiting_reason: str | None = None,
    pvc_phase: str = "Bound",
) -> list[Obj]:
    """One StatefulSet app: its pod, Service, Endpoints and PVC, healthy or not."""
    return [
        statefulset(app, namespace, replicas=1, ready=1 if ready else 0),
        pod(
            f"{app}-0",
            namespace,
            app=app,
            ready=ready,
            restarts=restarts,
            owner=("StatefulSet", app),
            waiting_reason=waiting_reason,
        ),
        service(app, namespace),
        endpoints(app, namespace, ready=ready),
        pvc(f"data-{app}-0", namespace, phase=pvc_phase),
    ]


def healthy_namespace(namespace: str = "monitoring", apps: Sequence[str] = APPS) -> list[Obj]:
    return [o for app in apps for o in app_objects(app, namespace)]


def degraded_namespace(namespace: str = "monitoring") -> list[Obj]:
    """The seed incident's shape: Prometheus crash-looping, Loki running but not Ready (so both
    Services have no endpoints), Grafana fine; plus a PVC stuck Pending."""
    return [
        *app_objects("prometheus", namespace, ready=False, restarts=9, waiting_reason="CrashLoopBackOff"),
        *app_objects("loki", namespace, ready=False, restarts=4),
        *app_objects("grafana", namespace),
        pvc("scratch", namespace, phase="Pending"),
    ]


def evidence_of(objects: Iterable[Mapping[str, Any]], namespaces: Sequence[str], **kwargs: Any) -> Evidence:
    parsed = [p for p in (parse_object(o) for o in objects) if p is not None]
    return build_evidence(parsed, namespaces=namespaces, **kwargs)


# ---------------------------------------------------------------------------------------------
# Store rows (for the pure tests; integration tests go through the real store API)
# ---------------------------------------------------------------------------------------------

NOW = 1_800_000_000.0


def incident(
    incident_id: int,
    *,
    namespace: str | None = "monitoring",
    status: IncidentStatus = IncidentStatus.FIRING,
    created_at: float = NOW - 600,
    updated_at: float | None = None,
    resolved_at: float | None = None,
    labels: dict[str, str] | None = None,
    findings: tuple[Finding, ...] = (),
    alertname: str = "PrometheusDown",
) -> Incident:
    common = {"alertname": alertname, "severity": "critical", **(labels or {})}
    if namespace is not None:
        common["namespace"] = namespace
    alert = Alert(
        fingerprint=f"fp{incident_id}",
        status="firing" if status == IncidentStatus.FIRING else "resolved",
        labels=common,
        annotations={},
        starts_at="2027-01-15T07:50:00Z",
        ends_at=None,
    )
    return Incident(
        id=incident_id,
        group_key=f"g{incident_id}",
        status=status,
        work_state=WorkState.DIAGNOSED,
        receiver="pitcrew",
        group_labels={"alertname": alertname},
        common_labels=common,
        common_annotations={},
        external_url="http://am.example",
        alerts=(alert,),
        created_at=created_at,
        updated_at=updated_at if updated_at is not None else created_at,
        findings=findings,
        # As the store does: a resolved incident has a resolution time (by default its last update).
        resolved_at=(resolved_at or updated_at or created_at) if status == IncidentStatus.RESOLVED else None,
    )


def execution(
    execution_id: int,
    incident_id: int | None,
    *,
    status: ExecutionStatus = "succeeded",
    started_at: float = NOW - 300,
) -> Execution:
    return Execution(
        id=execution_id,
        incident_id=incident_id,
        actor="U123",
        targets=("monitoring/StatefulSet/prometheus",),
        plan_json="{}",
        status=status,
        detail="validation passed" if status == "succeeded" else "wait-ready timed out",
        started_at=started_at,
        finished_at=None if status == "running" else started_at + 60,
    )
