"""`image-pull-failure`: ErrImagePull / ImagePullBackOff / InvalidImageName. Quotes the pull error
from the container status and the events. No automatic plan."""

from __future__ import annotations

from bot.evidence import Evidence
from bot.model import Finding, Severity
from handlers.base import Settings, clip, containers_with_status, live_pods, refs

CODE = "image-pull-failure"
ALERTS = ("KubePodNotReady", "KubeContainerWaiting", "KubeDeploymentReplicasMismatch")
REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    for pod in live_pods(evidence):
        for container, status in containers_with_status(pod):
            if status.state.state != "waiting" or status.state.reason not in REASONS:
                continue
            lines = [
                f"{pod.ref}: container {container.name} waiting ({status.state.reason}), image "
                f"{container.image}"
            ]
            if status.state.message:
                lines.append(f"status: {clip(status.state.message)}")
            pull_errors = [
                e
                for e in evidence.events_for(pod.ref)
                if e.type == "Warning"
                and (e.reason in ("Failed", "ErrImagePull") and "pull" in e.message.lower())
            ]
            lines += [f"event: {e.reason} x{e.count}: {clip(e.message)}" for e in pull_errors[-2:]]
            owner = evidence.owning_workload(pod)
            findings.append(
                Finding(
                    code=CODE,
                    severity=Severity.WARNING,
                    summary=(
                        f"{pod.name} ({container.name}) cannot pull image {container.image} "
                        f"({status.state.reason})"
                    ),
                    objects=refs(pod.ref, owner.ref if owner else None),
                    evidence=tuple(lines),
                )
            )
    return findings
