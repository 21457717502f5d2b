"""kubectl-shaped builders for the kinds the breadth handlers read (Jobs, CronJobs, Ingresses, HPAs,
PDBs, quotas, LimitRanges, NetworkPolicies, Secrets). Messages and fields are as current Kubernetes
components write them; callers vary names, namespaces and labels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def _meta(name: str, namespace: str | None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta.update({k: v for k, v in extra.items() if v})
    return meta


def condition(
    type_: str, status: str, reason: str = "", message: str = "", when: str = "2025-10-09T21:50:00Z"
) -> dict[str, Any]:
    c: dict[str, Any] = {"type": type_, "status": status, "lastTransitionTime": when}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def job(
    name: str,
    namespace: str,
    *,
    labels: Mapping[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
    backoff_limit: int | None = 6,
    active: int = 0,
    succeeded: int = 0,
    failed: int = 0,
    conditions: list[dict[str, Any]] | None = None,
    owner: str = "",
    start: str = "2025-10-09T21:40:00Z",
    completion: str = "",
) -> dict[str, Any]:
    labels = dict(labels or {"batch.kubernetes.io/job-name": name, "job-name": name})
    spec: dict[str, Any] = {
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "containers": containers or [{"name": "main", "image": "busybox:1.36"}],
            },
        },
    }
    if backoff_limit is not None:
        spec["backoffLimit"] = backoff_limit
    status: dict[str, Any] = {"startTime": start}
    for key, value in (("active", active), ("succeeded", succeeded), ("failed", failed)):
        if value:
            status[key] = value
    if conditions:
        status["conditions"] = conditions
    if completion:
        status["completionTime"] = completion
    meta = _meta(name, namespace, labels=labels)
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "batch/v1", "kind": "CronJob", "name": owner, "controller": True}
        ]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec, "status": status}


def cronjob(
    name: str,
    namespace: str,
    *,
    schedule: str = "*/5 * * * *",
    active: Iterable[str] = (),
    last_success: str = "",
) -> dict[str, Any]:
    status: dict[str, Any] = {"lastScheduleTime": "2025-10-09T21:55:00Z"}
    if active:
        status["active"] = [{"kind": "Job", "name": n, "namespace": namespace} for n in active]
    if last_success:
        status["lastSuccessfulTime"] = last_success
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(name, namespace),
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
            },
        },
        "status": status,
    }


def backend(service: str, port: int | str) -> dict[str, Any]:
    return {
        "service": {"name": service, "port": {"number": port} if isinstance(port, int) else {"name": port}}
    }


def ingress(
    name: str,
    namespace: str,
    *,
    rules: Iterable[tuple[str, str, str, int | str]] = (),  # (host, path, service, port)
    class_name: str | None = "nginx",
    tls: Iterable[tuple[tuple[str, ...], str]] = (),
    default: tuple[str, int | str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    by_host: dict[str, list[dict[str, Any]]] = {}
    for host, path, svc, port in rules:
        by_host.setdefault(host, []).append(
            {"path": path, "pathType": "Prefix", "backend": backend(svc, port)}
        )
    spec: dict[str, Any] = {
        "rules": [({"host": h} if h else {}) | {"http": {"paths": paths}} for h, paths in by_host.items()]
    }
    if class_name is not None:
        spec["ingressClassName"] = class_name
    if tls:
        spec["tls"] = [{"hosts": list(hosts), "secretName": secret} for hosts, secret in tls]
    if default:
        spec["defaultBackend"] = backend(*default)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(name, namespace, annotations=dict(annotations or {})),
        "spec": spec,
    }


def ingress_class(
    name: str, controller: str = "k8s.io/ingress-nginx", *, default: bool = False
) -> dict[str, Any]:
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": _meta(name, None, annotations=annotations),
        "spec": {"controller": controller},
    }


def hpa(
    name: str,
    namespace: str,
    *,
    target: tuple[str, str],
    min_replicas: int = 1,
    max_replicas: int = 5,
    current: int = 1,
    desired: int = 1,
    cpu_target: int = 80,
    cpu_now: int | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"currentReplicas": current, "desiredReplicas": desired}
    if cpu_now is not None:
        status["currentMetrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "current": {"averageUtilization": cpu_now, "averageValue": "350m"},
                },
            }
        ]
    if conditions is not None:
        status["conditions"] = conditions
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(name, namespace),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": target[0], "name": target[1]},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cpu_target},
                    },
                }
            ],
        },
        "status": status,
    }


def pdb(
    name: str,
    namespace: str,
    *,
    selector: Mapping[str, str] | None,
    min_available: int | str | None = None,
    max_unavailable: int | str | None = None,
    current: int = 0,
    desired: int = 0,
    expected: int = 0,
    allowed: int = 0,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if selector is not None:
        spec["selector"] = {"matchLabels": dict(selector)}
    if min_available is not None:
        spec["minAvailable"] = min_available
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    status: dict[str, Any] = {
        "currentHealthy": current,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "disruptionsAllowed": allowed,
        "observedGeneration": 1,
    }
    if conditions is not None:
        status["conditions"] = conditions
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, namespace, generation=1),
        "spec": spec,
        "status": status,
    }


def quota(name: str, namespace: str, *, hard: Mapping[str, str], used: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta(name, namespace),
        "spec": {"hard": dict(hard)},
        "status": {"hard": dict(hard), "used": dict(used)},
    }


def limit_range(
    name: str, namespace: str, *, max_: Mapping[str, str], type_: str = "Container"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _meta(name, namespace),
        "spec": {"limits": [{"type": type_, "max": dict(max_), "defaultRequest": {"cpu": "100m"}}]},
    }


def network_policy(
    name: str,
    namespace: str,
    *,
    pod_selector: Mapping[str, str],
    ingress: list[dict[str, Any]] | None = None,
    egress: list[dict[str, Any]] | None = None,
    types: Iterable[str] = (),
) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": {"matchLabels": dict(pod_selector)} if pod_selector else {}}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types:
        spec["policyTypes"] = list(types)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, namespace),
        "spec": spec,
    }


def secret(name: str, namespace: str, *, data: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A full Secret, data and kubectl's last-applied annotation included (pitcrew must drop both)."""
    data = dict(data or {"password": "c3VwZXJzZWNyZXQ="})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(
            name,
            namespace,
            annotations={
                "kubectl.kubernetes.io/last-applied-configuration": '{"data":'
                + str(data).replace("'", '"')
                + "}"
            },
            labels={"app": name},
        ),
        "data": data,
    }
