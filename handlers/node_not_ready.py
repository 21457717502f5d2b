"""`node-not-ready`: a Node hosting pods in scope whose Ready condition is not True. Lists the pods it
affects. No automatic plan."""

from __future__ import annotations

from bot.evidence import Evidence
from bot.model import Finding, Severity
from handlers.base import Settings, refs

CODE = "node-not-ready"
ALERTS = ("KubeNodeNotReady", "KubeNodeUnreachable", "KubePodNotReady")


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    for node in evidence.nodes:
        cond = node.ready_condition
        if cond is None or cond.status == "True":
            continue
        pods = [p for p in evidence.pods if p.node_name == node.meta.name]
        lines = [
            f"Node {node.meta.name}: Ready={cond.status} ({cond.reason or 'no reason'}): "
            f"{cond.message or 'no message'}"
        ]
        pressure = [c.type for c in node.conditions if c.type != "Ready" and c.status == "True"]
        if pressure:
            lines.append(f"also: {', '.join(pressure)}")
        if node.unschedulable:
            lines.append("the node is cordoned (unschedulable)")
        lines += [f"affected pod: {p.ref} ({'Ready' if p.ready else 'not Ready'})" for p in pods[:20]]
        if len(pods) > 20:
            lines.append(f"... and {len(pods) - 20} more pods")
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.CRITICAL,
                summary=(
                    f"Node {node.meta.name} is not Ready ({cond.reason or cond.status}); "
                    f"{len(pods)} pod(s) in scope run on it"
                ),
                objects=refs(node.ref, *(p.ref for p in pods)),
                evidence=tuple(lines),
            )
        )
    return findings
