"""`pod-evicted`: the kubelet evicted pods (status reason `Evicted`), or a node reports DiskPressure,
MemoryPressure or PIDPressure. One finding per node: the resource it ran short of, the pods it
evicted, what they were using. In the kubelet's wording (pkg/kubelet/eviction):

    The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 2Gi.
    Container app was using 9Gi, request is 0, has larger consumption of ephemeral-storage.
    The node had condition: [DiskPressure].
    Pod ephemeral local storage usage exceeds the total limit of containers 1Gi.
    Usage of EmptyDir volume "cache" exceeds the limit "512Mi".

No automatic plan: what to free, limit or move is a person's call.

Not a finding: a pressure condition that is False or Unknown (a NotReady node is node-not-ready's),
pods deleted through the Eviction API (a drain: they are gone, not Failed), and evictions more than a
day old on a node without pressure now (history that a Failed pod object happens to keep).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from bot.evidence import Evidence, Node, Pod
from bot.model import Finding, ObjectRef, Severity
from handlers.base import Settings, clip, owner_key, refs

CODE = "pod-evicted"
ALERTS = ("KubeNodePressure", "KubeNodeDiskPressure", "KubeNodeMemoryPressure", "KubePodNotReady")

PRESSURES = {"DiskPressure": "disk", "MemoryPressure": "memory", "PIDPressure": "pids"}
HISTORY_SECONDS = 86400.0

_LOW = re.compile(r"The node was low on resource: ([\w.-]+?)\.(?:\s|$)")
_HAD = re.compile(r"The node had condition: \[([^\]]*)\]")
_LOCAL = re.compile(
    r"Pod ephemeral local storage usage exceeds|exceeded its local ephemeral storage limit"
    r"|Usage of EmptyDir volume \"[^\"]+\" exceeds the limit"
)
_USING = re.compile(
    r"Container (\S+) was using (\S+), (?:which exceeds its request of|request is) (\S+?)[,.]"
)
_THRESHOLD = re.compile(r"Threshold quantity: (\S+), available: (\S+?)\.")


@dataclass
class _Node:
    name: str
    node: Node | None
    pressures: list[str] = field(default_factory=list)  # condition types that are True
    evicted: list[Pod] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)


def _evicted_at(pod: Pod) -> datetime | None:
    times = [c.last_transition for c in pod.conditions if c.last_transition is not None]
    for s in pod.container_statuses:
        if s.state.finished_at is not None:
            times.append(s.state.finished_at)
    return max(times) if times else None


def _resource(message: str) -> str:
    low = _LOW.search(message)
    if low:
        return low.group(1)
    had = _HAD.search(message)
    if had:
        conditions = [c.strip() for c in had.group(1).split(",") if c.strip()]
        return " and ".join(PRESSURES.get(c, c) for c in conditions) or "a node condition"
    if _LOCAL.search(message):
        return "ephemeral-storage (the pod's own limit)"
    return ""


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    nodes: dict[str, _Node] = {}
    for node in evidence.nodes:
        pressures = [c.type for c in node.conditions if c.type in PRESSURES and c.status == "True"]
        if pressures:
            nodes[node.meta.name] = _Node(node.meta.name, node, pressures)
    for pod in evidence.pods:
        if pod.meta.deleting or pod.reason != "Evicted":
            continue
        name = pod.node_name or "(unknown node)"
        entry = nodes.get(name)
        if entry is None:
            when = _evicted_at(pod)
            if (
                when is not None
                and evidence.observed_at is not None
                and (evidence.observed_at - when).total_seconds() > HISTORY_SECONDS
            ):
                continue  # long ago, and the node has no pressure now
            entry = nodes[name] = _Node(name, evidence.node(name))
        entry.evicted.append(pod)
        resource = _resource(pod.message)
        if resource and resource not in entry.resources:
            entry.resources.append(resource)

    findings: list[Finding] = []
    for entry in sorted(nodes.values(), key=lambda n: n.name):
        # What the evictions name; else what the pressure conditions mean.
        resources = list(entry.resources) or [PRESSURES[p] for p in entry.pressures]
        lines: list[str] = []
        node_obj = entry.node
        for pressure in entry.pressures:
            cond = next(c for c in node_obj.conditions if c.type == pressure) if node_obj else None
            since = (
                f" since {cond.last_transition:%Y-%m-%dT%H:%M:%SZ}" if cond and cond.last_transition else ""
            )
            detail = f" ({cond.reason}: {cond.message})" if cond and (cond.reason or cond.message) else ""
            lines.append(f"node {entry.name}: {pressure}=True{since}{detail}")
        if node_obj is not None:
            taints = [t for t in node_obj.taints if "pressure" in t]
            if taints:
                lines.append(f"node taints: {', '.join(taints)}")
        workloads: list[ObjectRef] = []
        for pod in entry.evicted[:8]:
            lines.append(f"{pod.ref} evicted: {clip(pod.message, 300)}")
            for container, using, request in _USING.findall(pod.message)[:2]:
                lines.append(f"  container {container} used {using} (request {request})")
        if len(entry.evicted) > 8:
            lines.append(f"... and {len(entry.evicted) - 8} more evicted pods")
        for pod in entry.evicted:
            key = owner_key(evidence, pod)
            if key.kind != "Pod" and key not in workloads:
                workloads.append(key)
        if workloads:
            lines.append(
                f"workloads of the evicted pods: {', '.join(f'{w.kind.lower()}/{w.name}' for w in workloads)}"
            )
        thresholds = {m for p in entry.evicted for m in _THRESHOLD.findall(p.message)}
        for quantity, available in sorted(thresholds)[:2]:
            lines.append(f"eviction threshold {quantity}, available then {available}")
        what = " and ".join(resources) or "resources"
        if entry.evicted:
            summary = (
                f"node {entry.name} ran low on {what}: the kubelet evicted {len(entry.evicted)} "
                f"pod{'s' if len(entry.evicted) != 1 else ''} ({', '.join(p.name for p in entry.evicted[:4])}"
                + (", ..." if len(entry.evicted) > 4 else "")
                + ")"
                + (f"; it still reports {', '.join(entry.pressures)}" if entry.pressures else "")
            )
        else:
            summary = (
                f"node {entry.name} reports {', '.join(entry.pressures)}: the kubelet evicts pods and "
                "the scheduler places no new ones there until it clears"
            )
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.CRITICAL if entry.pressures else Severity.WARNING,
                summary=summary,
                objects=refs(ObjectRef("Node", entry.name), *(p.ref for p in entry.evicted), *workloads),
                evidence=tuple(lines),
            )
        )
    return findings
