"""`pvc-pending`: a PersistentVolumeClaim a pod needs is Pending (or missing). Shows the provisioning
events, a missing StorageClass or the lack of a matching PV. No automatic plan."""

from __future__ import annotations

from bot.evidence import Evidence, Pod
from bot.model import Finding, ObjectRef, Severity
from handlers.base import Settings, clip, live_pods, refs

CODE = "pvc-pending"
ALERTS = ("KubePersistentVolumeClaimPending", "KubePodNotReady", "KubeStatefulSetReplicasMismatch")


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    users: dict[tuple[str, str], list[Pod]] = {}
    for pod in live_pods(evidence):
        if pod.phase not in ("Pending", ""):
            continue  # a running pod has its volumes bound already
        for volume in pod.spec.volumes:
            if volume.kind == "persistentVolumeClaim" and volume.claim_name:
                users.setdefault((pod.namespace, volume.claim_name), []).append(pod)
    findings: list[Finding] = []
    for (namespace, claim), pods in sorted(users.items()):
        pvc = evidence.pvc(namespace, claim)
        pod_names = ", ".join(p.name for p in pods)
        if pvc is None:
            if evidence.unlisted("persistentvolumeclaims", namespace):
                continue  # unknown, not missing
            findings.append(
                Finding(
                    code=CODE,
                    severity=Severity.WARNING,
                    summary=(
                        f"{pod_names} needs PersistentVolumeClaim {namespace}/{claim}, which does not exist"
                    ),
                    objects=refs(
                        *(p.ref for p in pods), ObjectRef("PersistentVolumeClaim", claim, namespace)
                    ),
                    evidence=(f"no PersistentVolumeClaim {claim} in {namespace}",),
                )
            )
            continue
        if pvc.phase != "Pending":
            continue
        lines = [
            f"PersistentVolumeClaim {claim}: Pending, requests {pvc.requested or '?'}, "
            f"storageClassName {pvc.storage_class if pvc.storage_class is not None else '(default)'}"
        ]
        cause = "no volume has been bound to it"
        if pvc.storage_class:
            sc = evidence.storage_class(pvc.storage_class)
            if sc is None and evidence.storage_classes:
                cause = f"StorageClass {pvc.storage_class} does not exist"
                lines.append(
                    f"StorageClass {pvc.storage_class} not found (known: "
                    f"{', '.join(s.meta.name for s in evidence.storage_classes)})"
                )
            elif sc is not None:
                lines.append(
                    f"StorageClass {sc.meta.name}: provisioner {sc.provisioner}, binding "
                    f"{sc.volume_binding_mode}"
                )
                if sc.provisioner == "kubernetes.io/no-provisioner":
                    cause = (
                        f"StorageClass {sc.meta.name} has no provisioner "
                        "and no matching PersistentVolume is free"
                    )
        elif pvc.storage_class == "":
            cause = "it asks for no StorageClass and no matching PersistentVolume is free"
        for event in evidence.events_for(pvc.ref)[-3:]:
            lines.append(f"event: {event.reason} x{event.count}: {clip(event.message)}")
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.WARNING,
                summary=(
                    f"{pod_names} cannot start: PersistentVolumeClaim {namespace}/{claim} is "
                    f"Pending ({cause})"
                ),
                objects=refs(*(p.ref for p in pods), pvc.ref),
                evidence=tuple(lines),
            )
        )
    return findings
