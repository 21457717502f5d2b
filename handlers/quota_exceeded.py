"""`quota-exceeded`: a controller cannot create pods because admission refuses them: a ResourceQuota
(`exceeded quota: NAME, requested: ..., used: ..., limited: ...`, or `failed quota: NAME: must
specify ...`) or a LimitRange (`maximum memory usage per Container is 512Mi, but limit is 1Gi`).

Read from the controllers' FailedCreate events (ReplicaSet, StatefulSet, DaemonSet, Job) and a
ReplicaSet's ReplicaFailure condition; says the quota, the resource, used against hard. A workload that
has all its pods by now (the refusal is history) is not a finding, nor a quota that is merely full.
No automatic plan: raising a quota or shrinking requests is a person's decision."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.evidence import Evidence, Workload
from bot.model import Finding, ObjectRef, Severity
from handlers.base import Settings, clip, refs

CODE = "quota-exceeded"
ALERTS = (
    "KubeQuotaExceeded",
    "KubeQuotaFullyUsed",
    "KubeDeploymentReplicasMismatch",
    "KubeStatefulSetReplicasMismatch",
)

_EXCEEDED = re.compile(
    r"exceeded quota: (?P<name>[^,\s]+), requested: (?P<requested>\S+), used: (?P<used>\S+), "
    r"limited: (?P<limited>[^\s\"]+)",
    re.IGNORECASE,
)
_FAILED = re.compile(r"failed quota: (?P<name>[^:\s]+): (?P<detail>.+?)(?:\"|$)")
_LIMIT_RANGE = re.compile(
    r"(?P<text>(?:maximum|minimum) (?P<resource>\S+) usage per "
    r"(?P<scope>Container|Pod|PersistentVolumeClaim) "
    r"is (?P<enforced>\S+?),? but (?:limit|request) is (?P<value>[^\s.,\]\"]+)"
    r"|(?P<ratio_resource>\S+) max limit to request ratio per (?:Container|Pod) is \S+, "
    r"but provided ratio is \S+)"
)

_KINDS = ("ReplicaSet", "StatefulSet", "DaemonSet", "Job")


@dataclass(frozen=True, slots=True)
class _Refusal:
    kind: str  # "quota" | "limitrange"
    name: str  # the quota's name ("" for a LimitRange: the message does not name it)
    detail: str
    message: str


def _parse(message: str) -> _Refusal | None:
    m = _EXCEEDED.search(message)
    if m:
        detail = f"requested {m['requested']}, used {m['used']}, limited {m['limited']}"
        return _Refusal("quota", m["name"], detail, message)
    m = _FAILED.search(message)
    if m:
        return _Refusal("quota", m["name"], m["detail"].strip(), message)
    m = _LIMIT_RANGE.search(message)
    if m:
        return _Refusal("limitrange", "", m["text"], message)
    return None


def _resources(detail: str) -> list[str]:
    """`requests.cpu=500m,limits.cpu=1` -> [requests.cpu, limits.cpu] (from the `limited:` part)."""
    limited = detail.rsplit("limited ", 1)[-1]
    return [part.split("=", 1)[0] for part in limited.split(",") if "=" in part]


def _satisfied(evidence: Evidence, kind: str, namespace: str, name: str) -> bool:
    """Whether the refusing controller has what it wants by now (then the refusal is history)."""
    if kind == "Job":
        job = evidence.job(namespace, name)
        return job is not None and (job.complete or (job.active > 0 and job.failed == 0))
    workload = evidence.workload(kind, namespace, name)
    if workload is None:
        return False
    want = workload.replicas if workload.replicas is not None else 1
    return workload.ready_replicas >= want


def _top(evidence: Evidence, kind: str, namespace: str, name: str) -> ObjectRef | None:
    workload: Workload | None = evidence.workload(kind, namespace, name)
    owner = workload.meta.controller if workload is not None else None
    if owner is not None and owner.kind == "Deployment":
        return ObjectRef("Deployment", owner.name, namespace)
    if workload is None and kind == "ReplicaSet" and "-" in name:
        deployment = evidence.workload("Deployment", namespace, name.rsplit("-", 1)[0])
        return deployment.ref if deployment is not None else None
    return None


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    refused: dict[tuple[str, str, str], list[tuple[_Refusal, int]]] = {}
    for event in evidence.events:
        involved = event.involved
        if event.reason != "FailedCreate" or involved.kind not in _KINDS:
            continue
        refusal = _parse(event.message)
        if refusal is not None:
            key = (involved.kind, involved.namespace or "", involved.name)
            refused.setdefault(key, []).append((refusal, event.count))
    for workload in evidence.workloads:
        cond = workload.condition("ReplicaFailure")
        if cond is None or cond.status != "True":
            continue
        refusal = _parse(cond.message)
        key = (workload.kind, workload.meta.namespace or "", workload.meta.name)
        if refusal is not None and key not in refused:
            refused[key] = [(refusal, 1)]
    findings: list[Finding] = []
    reported: set[ObjectRef] = set()
    # ReplicaSets before their Deployment's own ReplicaFailure condition: one finding per workload.
    for (kind, namespace, name), refusals in sorted(
        refused.items(), key=lambda kv: (kv[0][0] == "Deployment", kv[0])
    ):
        if _satisfied(evidence, kind, namespace, name):
            continue
        subject_ref = _top(evidence, kind, namespace, name) or ObjectRef(kind, name, namespace)
        if subject_ref in reported:
            continue
        reported.add(subject_ref)
        refusal = refusals[-1][0]
        attempts = sum(count for _, count in refusals)
        lines = [f"{kind} {name}: FailedCreate x{attempts}: {clip(refusal.message)}"]
        objects: list[ObjectRef | None] = [
            _top(evidence, kind, namespace, name),
            ObjectRef(kind, name, namespace),
        ]
        if refusal.kind == "quota":
            quota = next(
                (
                    q
                    for q in evidence.resource_quotas
                    if q.meta.namespace == namespace and q.meta.name == refusal.name
                ),
                None,
            )
            objects.append(ObjectRef("ResourceQuota", refusal.name, namespace))
            if quota is not None:
                shown = _resources(refusal.detail) or sorted(quota.hard)
                for resource in shown:
                    if resource in quota.hard:
                        lines.append(
                            f"ResourceQuota {refusal.name}: {resource} used {quota.used.get(resource, '?')} "
                            f"of hard {quota.hard[resource]}"
                        )
            what = f"ResourceQuota {refusal.name} refuses its pods: {clip(refusal.detail, 200)}"
        else:
            ranges = [lr for lr in evidence.limit_ranges if lr.meta.namespace == namespace]
            for lr in ranges:
                objects.append(lr.ref)
                for item in lr.limits:
                    caps = ", ".join(f"{k}={v}" for k, v in item.max.items())
                    if caps:
                        lines.append(f"LimitRange {lr.meta.name}: max per {item.type}: {caps}")
            what = f"a LimitRange refuses its pods: {refusal.detail}"
        top = objects[0]
        subject = f"{top.kind} {top.name} ({kind} {name})" if top is not None else f"{kind} {name}"
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.WARNING,
                summary=f"{subject} cannot create pods: {what}",
                objects=refs(*objects),
                evidence=tuple(lines),
            )
        )
    return findings
