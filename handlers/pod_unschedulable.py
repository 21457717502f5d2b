"""`pod-unschedulable`: a Pending pod the scheduler could not place (PodScheduled=False/Unschedulable or
FailedScheduling events). Quotes the scheduler's reason. No automatic plan."""

from __future__ import annotations

from bot.evidence import Evidence
from bot.model import Finding, Severity
from handlers.base import Settings, clip, live_pods, refs

CODE = "pod-unschedulable"
ALERTS = (
    "KubePodNotScheduled",
    "KubePodNotReady",
    "KubeStatefulSetReplicasMismatch",
    "KubeDeploymentReplicasMismatch",
)


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    for pod in live_pods(evidence):
        if pod.phase != "Pending" or pod.node_name:
            continue
        cond = pod.condition("PodScheduled")
        events = [e for e in evidence.events_for(pod.ref) if e.reason == "FailedScheduling"]
        unschedulable = cond is not None and cond.status == "False" and cond.reason == "Unschedulable"
        if not unschedulable and not events:
            continue
        reason = (cond.message if unschedulable and cond and cond.message else "") or (
            events[-1].message if events else ""
        )
        lines = [f"{pod.ref}: Pending, not scheduled"]
        if reason:
            lines.append(f"scheduler: {clip(reason)}")
        lines += [
            f"event: FailedScheduling x{e.count}: {clip(e.message)}"
            for e in events[-2:]
            if e.message != reason
        ]
        owner = evidence.owning_workload(pod)
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.WARNING,
                summary=f"{pod.name} cannot be scheduled: {clip(reason, 200) or 'no node fits'}",
                objects=refs(pod.ref, owner.ref if owner else None),
                evidence=tuple(lines),
            )
        )
    return findings
