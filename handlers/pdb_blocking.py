"""`pdb-blocking`: a PodDisruptionBudget that blocks voluntary evictions: it allows 0 disruptions
because fewer of its pods are healthy than it requires (status currentHealthy < desiredHealthy), so
every `kubectl drain` of their nodes and every eviction of its pods waits; or its selector matches no
pod at all (and no workload's template would make one), so it protects nothing.

Lists the unhealthy pods it counts (their findings are the cause) and the nodes a drain would be
blocked on. Not findings: a budget that allows a disruption; one at 0 allowed while all its pods are
healthy (minAvailable equal to the replicas is a deliberate choice); a budget for a workload scaled to
zero. No automatic plan."""

from __future__ import annotations

from bot.evidence import Evidence, LabelSelector, Pod, PodDisruptionBudget
from bot.model import Finding, Severity
from handlers.base import Settings, clip, refs

CODE = "pdb-blocking"
ALERTS = ("KubePdbNotEnoughHealthyPods", "KubeNodeDrainBlocked")


def _selected(evidence: Evidence, pdb: PodDisruptionBudget, selector: LabelSelector) -> list[Pod]:
    return [
        p
        for p in evidence.pods_in(pdb.meta.namespace or "")
        if not p.meta.deleting and p.phase not in ("Succeeded", "Failed") and selector.matches(p.meta.labels)
    ]


def _healthy(pod: Pod) -> bool:
    return pod.phase == "Running" and pod.ready


def _budget(pdb: PodDisruptionBudget) -> str:
    if pdb.min_available is not None:
        return f"minAvailable {pdb.min_available}"
    if pdb.max_unavailable is not None:
        return f"maxUnavailable {pdb.max_unavailable}"
    return "no budget"


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    for pdb in evidence.pdbs:
        namespace = pdb.meta.namespace or ""
        if pdb.meta.deleting or evidence.unlisted("pods", namespace):
            continue
        selector = pdb.selector
        pods = _selected(evidence, pdb, selector) if selector is not None else []
        name = f"{namespace}/{pdb.meta.name}"
        if selector is not None and not selector.is_empty and not pods:
            if pdb.expected_pods > 0 or not any(p.namespace == namespace for p in evidence.pods):
                continue  # the status counts pods this evidence lacks, or the bundle holds no pods here
            if any(
                w.meta.namespace == namespace and selector.matches(w.template_labels)
                for w in evidence.workloads
            ):
                continue  # its workload is scaled to zero or between pods: nothing to protect now
            findings.append(
                Finding(
                    code=CODE,
                    severity=Severity.WARNING,
                    summary=f"PodDisruptionBudget {name} selects no pods: it protects nothing",
                    objects=(pdb.ref,),
                    evidence=(
                        f"PodDisruptionBudget {pdb.meta.name}: {_budget(pdb)}, selector "
                        f"{_selector_text(selector)} matches none of the "
                        f"{len(evidence.pods_in(namespace))} pods in {namespace}",
                    ),
                )
            )
            continue
        if (
            pdb.disruptions_allowed > 0
            or pdb.current_healthy >= pdb.desired_healthy
            or pdb.expected_pods == 0
        ):
            continue
        unhealthy = [p for p in pods if not _healthy(p)]
        nodes = sorted({p.node_name for p in pods if p.node_name})
        lines = [
            f"PodDisruptionBudget {pdb.meta.name}: {_budget(pdb)}; {pdb.current_healthy} healthy of "
            f"{pdb.expected_pods} pods, {pdb.desired_healthy} required, {pdb.disruptions_allowed} "
            "disruptions allowed",
        ]
        cond = next((c for c in pdb.conditions if c.type == "DisruptionAllowed"), None)
        if cond is not None and cond.status == "False":
            lines.append(
                f"condition DisruptionAllowed=False {cond.reason}: {clip(cond.message)}".rstrip(": ")
            )
        if unhealthy:
            lines.append(
                "unhealthy: "
                + ", ".join(f"{p.name} ({p.phase or '?'}, ready={str(p.ready).lower()})" for p in unhealthy)
            )
        if nodes:
            lines.append(f"blocks eviction of its pods, so `kubectl drain` waits on: {', '.join(nodes)}")
        owners = {w.ref for p in pods if (w := evidence.owning_workload(p)) is not None}
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.WARNING,
                summary=(
                    f"PodDisruptionBudget {name} allows 0 disruptions: {pdb.current_healthy}/"
                    f"{pdb.desired_healthy} required pods healthy; drains of "
                    f"{', '.join(nodes) if nodes else 'their nodes'} are blocked"
                ),
                objects=refs(pdb.ref, *sorted(owners), *(p.ref for p in unhealthy)),
                evidence=tuple(lines),
            )
        )
    return findings


def _selector_text(selector: LabelSelector) -> str:
    parts = [f"{k}={v}" for k, v in selector.match_labels.items()]
    parts += [f"{r.key} {r.operator} ({', '.join(r.values)})" for r in selector.match_expressions]
    return ",".join(parts) or "{}"
