"""`statefulset-misconfigured`: a StatefulSet that names what does not exist: its `serviceName` (the
governing Service that gives its pods their stable DNS names `pod-0.SERVICE`), or a StorageClass in
its volumeClaimTemplates (its claims can never be provisioned). Says what is missing.

Nothing is claimed missing from a list that could not be read, or that a bundle does not hold at all.
No automatic plan."""

from __future__ import annotations

from bot.evidence import Evidence
from bot.model import Finding, ObjectRef, Severity
from handlers.base import Settings, refs

CODE = "statefulset-misconfigured"
ALERTS = ("KubeStatefulSetReplicasMismatch", "KubeStatefulSetGenerationMismatch")


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    class_names = ", ".join(s.meta.name for s in evidence.storage_classes)
    classes_known = bool(evidence.storage_classes) and not evidence.unlisted("storageclasses")
    for sts in evidence.workloads:
        if sts.kind != "StatefulSet" or sts.meta.deleting:
            continue
        namespace = sts.meta.namespace or ""
        missing: list[str] = []
        objects: list[ObjectRef | None] = [sts.ref]
        services_known = not evidence.unlisted("services", namespace) and any(
            s.meta.namespace == namespace for s in evidence.services
        )
        if sts.service_name and services_known and evidence.service(namespace, sts.service_name) is None:
            missing.append(
                f"serviceName {sts.service_name}: no such Service in {namespace} (its pods get no stable "
                f"DNS names {sts.meta.name}-0.{sts.service_name})"
            )
            objects.append(ObjectRef("Service", sts.service_name, namespace))
        for template in sts.claim_templates:
            sc = template.storage_class
            if sc and classes_known and evidence.storage_class(sc) is None:
                missing.append(
                    f"volumeClaimTemplate {template.name}: StorageClass {sc} does not exist "
                    f"(the cluster has: {class_names})"
                )
                objects.append(ObjectRef("StorageClass", sc))
        if not missing:
            continue
        want = sts.replicas if sts.replicas is not None else 1
        lines = [f"StatefulSet {sts.meta.name}: {sts.ready_replicas}/{want} ready", *missing]
        for event in evidence.events_for(sts.ref)[-2:]:
            if event.type == "Warning":
                lines.append(f"event: {event.reason} x{event.count}: {event.message}")
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.WARNING,
                summary=(
                    f"StatefulSet {namespace}/{sts.meta.name} is misconfigured: {missing[0].split(' (')[0]}"
                    + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else "")
                ),
                objects=refs(*objects),
                evidence=tuple(lines),
            )
        )
    return findings
