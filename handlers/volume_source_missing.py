"""`volume-source-missing`: pods stuck in ContainerCreating because a volume they mount cannot be set
up — the ConfigMap or Secret of a configMap, secret or projected volume does not exist (or lacks a key
the volume lists), or the CSI driver of a volume is not registered on the node.

Read from the kubelet's FailedMount events, in its own words:
`MountVolume.SetUp failed for volume "cfg" : configmap "app-config" not found`,
`... : secret "tls" not found`, `... : configmap references non-existent config key: app.yaml`,
`... : driver name ebs.csi.aws.com not found in the list of registered CSI drivers`;
and, without events, from a configMap volume whose ConfigMap is not among the listed ones.

One finding per missing object, naming the pods and the workloads that need it (their templates too,
even with no pod waiting yet). No automatic plan: only a person knows what the object should hold.

Not a finding: FailedMount events about a pod that is running now (the object appeared and the kubelet
retried), an optional source, an object that exists in the evidence (the event is stale).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.evidence import Evidence, Pod, PodSpec, Volume
from bot.model import Finding, ObjectRef, Severity
from handlers.base import Settings, clip, is_recent, live_pods, refs

CODE = "volume-source-missing"
ALERTS = ("KubePodNotReady", "KubeContainerWaiting", "KubeDeploymentReplicasMismatch")

_VOLUME = re.compile(r'for volume "([^"]+)"')
# Newer kubelets say `configmap "x"`, older ones (API NotFound errors) `configmaps "x"`.
_NOT_FOUND = re.compile(r'\b(configmaps?|secrets?) "([^"]+)" not found', re.IGNORECASE)
_NO_KEY = re.compile(r"references non-existent (config|secret) key: (\S+)", re.IGNORECASE)
_NO_DRIVER = re.compile(r"driver name (\S+) not found in the list of registered CSI drivers")
_STUCK_REASONS = ("ContainerCreating", "PodInitializing", "")


@dataclass
class _Missing:
    problem: str  # "ConfigMap app-config does not exist", "Secret tls has no key tls.crt", ...
    ref: ObjectRef
    pods: list[Pod] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _stuck(pod: Pod) -> bool:
    """Still waiting for its volumes: scheduled, Pending, every container waiting to be created."""
    if pod.phase not in ("Pending", "") or not pod.node_name:
        return False
    statuses = pod.init_container_statuses + pod.container_statuses
    return all(s.state.state == "waiting" and s.state.reason in _STUCK_REASONS for s in statuses)


def _uses(spec: PodSpec, kind: str, name: str) -> list[Volume]:
    out: list[Volume] = []
    for v in spec.volumes:
        if (
            (kind == "ConfigMap" and v.kind == "configMap" and v.config_map == name and not v.optional)
            or (kind == "Secret" and v.kind == "secret" and v.secret == name and not v.optional)
            or any(s.kind == kind and s.name == name and not s.optional for s in v.sources)
            or (kind == "CSIDriver" and v.kind == "csi" and v.driver == name)
        ):
            out.append(v)
    return out


def _exists(evidence: Evidence, kind: str, namespace: str, name: str) -> bool:
    if kind == "ConfigMap":
        return evidence.configmap(namespace, name) is not None
    return kind == "Secret" and evidence.secret_exists(namespace, name)


def _listed(evidence: Evidence, kind: str, namespace: str) -> bool:
    """Whether objects of `kind` in `namespace` were read, so one missing from them is missing: the
    list did not fail and holds something there (a bundle without the file proves nothing)."""
    if kind == "ConfigMap":
        return not evidence.unlisted("configmaps", namespace) and any(
            c.meta.namespace == namespace for c in evidence.configmaps
        )
    return not evidence.unlisted("secrets", namespace) and any(
        x.meta.namespace == namespace for x in evidence.secrets
    )


def _volume_object(pod: Pod, volume_name: str, kind: str) -> str:
    """The ConfigMap/Secret name behind a pod's volume (for the "non-existent key" message)."""
    volume = pod.spec.volume(volume_name)
    if volume is None:
        return ""
    if kind == "ConfigMap" and volume.kind == "configMap":
        return volume.config_map
    if kind == "Secret" and volume.kind == "secret":
        return volume.secret
    names = [s.name for s in volume.sources if s.kind == kind]
    return names[0] if len(names) == 1 else ""


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    missing: dict[ObjectRef, _Missing] = {}

    def note(ref: ObjectRef, problem: str, pod: Pod, line: str) -> None:
        entry = missing.setdefault(ref, _Missing(problem, ref))
        if pod not in entry.pods:
            entry.pods.append(pod)
        if line and line not in entry.lines and len(entry.lines) < 4:
            entry.lines.append(line)

    for pod in live_pods(evidence):
        if not _stuck(pod):
            continue
        ns = pod.namespace
        for event in evidence.events_for(pod.ref):
            if event.reason != "FailedMount" or not is_recent(evidence, event.last_seen, settings):
                continue
            line = f"event on {pod.name}: FailedMount x{event.count}: {clip(event.message)}"
            for kind_word, name in _NOT_FOUND.findall(event.message):
                kind = "ConfigMap" if kind_word.lower().startswith("configmap") else "Secret"
                if _exists(evidence, kind, ns, name):
                    continue  # created since: the kubelet's next retry mounts it
                note(ObjectRef(kind, name, ns), f"{kind} {name} does not exist", pod, line)
            for kind_word, key in _NO_KEY.findall(event.message):
                kind = "ConfigMap" if kind_word.lower() == "config" else "Secret"
                named = _VOLUME.search(event.message)
                name = _volume_object(pod, named.group(1), kind) if named else ""
                if not name:
                    continue
                cm = evidence.configmap(ns, name) if kind == "ConfigMap" else None
                if cm is not None and key in cm.data:
                    continue  # the key was added since
                note(ObjectRef(kind, name, ns), f"{kind} {name} has no key {key}", pod, line)
            for driver in _NO_DRIVER.findall(event.message):
                note(
                    ObjectRef("CSIDriver", driver),
                    f"CSI driver {driver} is not registered on node {pod.node_name}",
                    pod,
                    line,
                )
        # No event (expired, or not collected): a ConfigMap or Secret volume source that is not among
        # the namespace's listed ones. Never kube-root-ca.crt (its controller makes it; a bundle may
        # simply not hold it).
        for volume in pod.spec.volumes:
            wanted: list[tuple[str, str]] = []
            if volume.kind == "configMap" and not volume.optional:
                wanted.append(("ConfigMap", volume.config_map))
            if volume.kind == "secret" and not volume.optional:
                wanted.append(("Secret", volume.secret))
            wanted += [(src.kind, src.name) for src in volume.sources if not src.optional]
            for kind, name in wanted:
                if (
                    name
                    and name != "kube-root-ca.crt"
                    and _listed(evidence, kind, ns)
                    and not _exists(evidence, kind, ns, name)
                ):
                    note(ObjectRef(kind, name, ns), f"{kind} {name} does not exist", pod, "")

    findings: list[Finding] = []
    for entry in missing.values():
        kind, name = entry.ref.kind, entry.ref.name
        pods = entry.pods
        workloads = []
        for pod in pods:
            owner = evidence.owning_workload(pod)
            if owner is not None and owner.ref not in workloads:
                workloads.append(owner.ref)
        # Workloads whose template needs it too (scaled down, or their pods not collected).
        for workload in evidence.workloads:
            if workload.kind == "ReplicaSet" or workload.ref in workloads:
                continue
            if (kind == "CSIDriver" or workload.meta.namespace == entry.ref.namespace) and _uses(
                workload.template, kind, name
            ):
                workloads.append(workload.ref)
        volumes = sorted({v.name for p in pods for v in _uses(p.spec, kind, name)})
        needed_by = ", ".join(f"{w.kind.lower()}/{w.name}" for w in workloads)
        lines = [entry.problem, f"pods waiting in ContainerCreating: {', '.join(p.name for p in pods)}"]
        if volumes:
            lines.append(f"volumes: {', '.join(volumes)}")
        if workloads:
            lines.append(f"needed by: {needed_by}")
        lines += entry.lines
        if kind == "CSIDriver":
            lines.append("check that the driver's node plugin (its DaemonSet) runs on that node")
        subject = f"{len(pods)} pod{'s' if len(pods) != 1 else ''}"
        if workloads:
            subject += f" of {needed_by}"
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.CRITICAL,
                summary=f"{subject} cannot mount their volumes: {entry.problem}",
                objects=refs(entry.ref, *(p.ref for p in pods), *workloads),
                evidence=tuple(lines),
            )
        )
    return findings
