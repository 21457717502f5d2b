"""`pvc-provisioning-failed`: a PersistentVolumeClaim stays Pending because no volume can be made or
found for it, whether or not a pod uses it yet: the provisioner reports ProvisioningFailed (quoted:
`storageclass.storage.k8s.io "fast" not found`, a CSI driver's error), the claim names a StorageClass
that does not exist, the PV controller's FailedBinding (`no persistent volumes available for this claim
and no storage class is set`), or an external provisioner that has not acted for many minutes.

Pods waiting on the claim are in the finding, so their findings (pvc-pending, pod-unschedulable, ...)
are `caused_by` it. WaitForFirstConsumer is the StorageClass working as designed, not a failure.
No automatic plan."""

from __future__ import annotations

from bot.evidence import Event, Evidence, PersistentVolumeClaim, Pod
from bot.model import Finding, ObjectRef, Severity
from handlers.base import Settings, clip, refs

CODE = "pvc-provisioning-failed"
ALERTS = ("KubePersistentVolumeClaimPending", "KubePersistentVolumeErrors", "KubePodNotReady")

DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
# An external provisioner that has not created the volume in this long is not coming.
STALLED_SECONDS = 600.0


def _waiting_pods(evidence: Evidence, pvc: PersistentVolumeClaim) -> list[Pod]:
    namespace = pvc.meta.namespace or ""
    return [
        p
        for p in evidence.pods_in(namespace)
        if not p.meta.deleting
        and p.phase in ("Pending", "")
        and any(v.kind == "persistentVolumeClaim" and v.claim_name == pvc.meta.name for v in p.spec.volumes)
    ]


def _age_seconds(evidence: Evidence, pvc: PersistentVolumeClaim) -> float | None:
    if evidence.observed_at is None or pvc.meta.created_at is None:
        return None
    return (evidence.observed_at - pvc.meta.created_at).total_seconds()


def _cause(
    evidence: Evidence, pvc: PersistentVolumeClaim, events: list[Event]
) -> tuple[str, list[str]] | None:
    """(cause, evidence lines) when the claim cannot be provisioned or bound; None if it may yet be."""
    lines: list[str] = []
    failed = [e for e in events if e.reason == "ProvisioningFailed"]
    if failed:
        last = failed[-1]
        source = f" ({last.source})" if last.source else ""
        lines.append(
            f"event: ProvisioningFailed x{sum(e.count for e in failed)}{source}: {clip(last.message)}"
        )
        return clip(last.message, 240), lines
    sc_name = pvc.storage_class
    if sc_name:
        sc = evidence.storage_class(sc_name)
        if sc is None and evidence.storage_classes and not evidence.unlisted("storageclasses"):
            known = ", ".join(s.meta.name for s in evidence.storage_classes)
            lines.append(f"StorageClass {sc_name} not found (the cluster has: {known})")
            return f'storageclass.storage.k8s.io "{sc_name}" not found', lines
    binding = [e for e in events if e.reason == "FailedBinding"]
    if binding:
        last = binding[-1]
        lines.append(f"event: FailedBinding x{sum(e.count for e in binding)}: {clip(last.message)}")
        return clip(last.message, 240), lines
    if (
        sc_name is None
        and evidence.storage_classes
        and not any(s.meta.annotations.get(DEFAULT_CLASS) == "true" for s in evidence.storage_classes)
    ):
        lines.append(
            "the claim names no StorageClass and none is marked default "
            f"({DEFAULT_CLASS}); classes: {', '.join(s.meta.name for s in evidence.storage_classes)}"
        )
        return "no StorageClass is named and the cluster has no default StorageClass", lines
    waiting = [e for e in events if e.reason == "ExternalProvisioning"]
    age = _age_seconds(evidence, pvc)
    if waiting and age is not None and age > STALLED_SECONDS:
        last = waiting[-1]
        lines.append(f"event: ExternalProvisioning x{sum(e.count for e in waiting)}: {clip(last.message)}")
        lines.append(f"Pending for {int(age // 60)} minutes: is the provisioner running?")
        return f"no provisioner has created a volume for {int(age // 60)} minutes", lines
    return None


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    for pvc in evidence.pvcs:
        if pvc.phase != "Pending" or pvc.meta.deleting:
            continue
        events = sorted(
            evidence.events_for(pvc.ref), key=lambda e: e.last_seen.timestamp() if e.last_seen else 0.0
        )
        found = _cause(evidence, pvc, list(events))
        if found is None:
            continue
        cause, lines = found
        namespace = pvc.meta.namespace or ""
        sc = pvc.storage_class
        lines.insert(
            0,
            f"PersistentVolumeClaim {pvc.meta.name}: Pending, requests {pvc.requested or '?'} "
            f"({', '.join(pvc.access_modes) or 'no access modes'}), storageClassName "
            f"{sc if sc is not None else '(default)'}",
        )
        klass = evidence.storage_class(sc) if sc else None
        if klass is not None:
            lines.append(
                f"StorageClass {klass.meta.name}: provisioner {klass.provisioner}, "
                f"volumeBindingMode {klass.volume_binding_mode}"
            )
        pods = _waiting_pods(evidence, pvc)
        if pods:
            lines.append(f"waiting on it: {', '.join(p.name for p in pods)}")
        owners = {w.ref for p in pods if (w := evidence.owning_workload(p)) is not None}
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.WARNING,
                summary=f"PersistentVolumeClaim {namespace}/{pvc.meta.name} cannot be provisioned: {cause}",
                objects=refs(
                    pvc.ref,
                    ObjectRef("StorageClass", sc) if sc else None,
                    *(p.ref for p in pods),
                    *sorted(owners),
                ),
                evidence=tuple(lines),
            )
        )
    return findings
