"""`container-config-error`: CreateContainerConfigError — a ConfigMap, Secret or key the container
needs is missing. Says what is missing (from the kubelet's message and the references that were not
found). No automatic plan."""

from __future__ import annotations

import re

from bot.evidence import Evidence, Pod
from bot.model import Finding, Severity
from handlers.base import Settings, clip, containers_with_status, live_pods, refs

CODE = "container-config-error"
ALERTS = ("KubePodNotReady", "KubeContainerWaiting")
MISSING = re.compile(
    r"""(configmap|secret) "([^"]+)" not found"""
    r"""|couldn't find key (\S+) in (ConfigMap|Secret) ([\w.-]+)/([\w.-]+)""",
    re.IGNORECASE,
)


def _missing_configmaps(evidence: Evidence, pod: Pod, container_name: str) -> list[str]:
    if evidence.unlisted("configmaps", pod.namespace):
        return []  # not readable: absence proves nothing
    container = pod.spec.container(container_name)
    out: list[str] = []
    for ref in container.env_refs if container else ():
        if ref.kind != "ConfigMap" or ref.optional:
            continue
        cm = evidence.configmap(pod.namespace, ref.name)
        if cm is None:
            out.append(f"ConfigMap {ref.name} (referenced by {container_name}) was not found")
        elif ref.key and ref.key not in cm.data:
            out.append(f"ConfigMap {ref.name} has no key {ref.key} (referenced by {container_name})")
    for volume in pod.spec.volumes:
        if (
            volume.kind == "configMap"
            and not volume.optional
            and evidence.configmap(pod.namespace, volume.config_map) is None
        ):
            out.append(f"ConfigMap {volume.config_map} (volume {volume.name}) was not found")
    return out


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    for pod in live_pods(evidence):
        for container, status in containers_with_status(pod):
            if status.state.state != "waiting" or status.state.reason != "CreateContainerConfigError":
                continue
            message = status.state.message
            lines = [f"{pod.ref}: container {container.name} waiting (CreateContainerConfigError)"]
            if message:
                lines.append(f"kubelet: {clip(message)}")
            for event in evidence.events_for(pod.ref):
                if event.type == "Warning" and event.reason == "Failed" and event.message != message:
                    lines.append(f"event: Failed x{event.count}: {clip(event.message)}")
                    break
            missing = _missing_configmaps(evidence, pod, container.name)
            lines += missing
            match = MISSING.search(message)
            if match and match.group(1):
                what = f"{match.group(1)} {match.group(2)} is missing"
            elif match:
                what = f"key {match.group(3)} is missing from {match.group(4)} {match.group(6)}"
            elif missing:
                what = missing[0]
            else:
                what = clip(message, 160) or "its configuration is incomplete"
            owner = evidence.owning_workload(pod)
            findings.append(
                Finding(
                    code=CODE,
                    severity=Severity.CRITICAL,
                    summary=f"{pod.name} ({container.name}) cannot start: {what}",
                    objects=refs(pod.ref, owner.ref if owner else None),
                    evidence=tuple(lines),
                )
            )
    return findings
