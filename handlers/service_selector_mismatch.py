"""`service-selector-mismatch`: a Service's selector matches no pod in its namespace.

No automatic plan (which side is wrong is a human call); the finding names the pods that look
intended and the label that differs.
"""

from __future__ import annotations

from bot.evidence import Evidence, Pod, Service
from bot.model import Finding, Severity
from handlers.base import Settings, refs

CODE = "service-selector-mismatch"
ALERTS = ("KubeServiceNoEndpoints", "TargetDown", "absent")


def _score(service: Service, pod: Pod) -> int:
    """How much a pod looks like the one the Service meant: shared selector pairs and name hints."""
    score = 0
    name = service.meta.name.lower()
    for key, value in service.selector.items():
        have = pod.meta.labels.get(key)
        if have == value:
            score += 3
        elif have is not None:
            score += 1
        # The value carried under another label scheme (app vs app.kubernetes.io/name).
        if value in pod.meta.labels.values() and have != value:
            score += 2
    if name and (name in pod.name.lower() or any(name == v.lower() for v in pod.meta.labels.values())):
        score += 2
    return score


def _difference(service: Service, pod: Pod) -> str:
    parts = []
    for key, value in sorted(service.selector.items()):
        have = pod.meta.labels.get(key)
        if have != value:
            parts.append(f"{key}={have}" if have is not None else f"no label {key}")
    return ", ".join(parts)


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    for service in evidence.services:
        if not service.selector or service.type == "ExternalName":
            continue
        namespace = service.meta.namespace or ""
        if evidence.unlisted("pods", namespace) or evidence.pods_selected_by(namespace, service.selector):
            continue  # pods not readable: "matches no pod" would be a guess
        # A workload scaled to zero on purpose is not a mismatch.
        scaled_down = [
            w
            for w in evidence.workloads
            if w.meta.namespace == namespace
            and w.replicas == 0
            and all(w.template_labels.get(k) == v for k, v in service.selector.items())
        ]
        if scaled_down:
            continue
        selector = ",".join(f"{k}={v}" for k, v in sorted(service.selector.items()))
        candidates = sorted(
            ((s, p) for p in evidence.pods_in(namespace) if (s := _score(service, p)) > 0),
            key=lambda sp: (-sp[0], sp[1].name),
        )[:3]
        lines = [f"Service {service.meta.name} selects {selector}: no pod in {namespace} has these labels"]
        for _, pod in candidates:
            labels = ",".join(f"{k}={v}" for k, v in sorted(pod.meta.labels.items()))
            lines.append(
                f"looks intended: pod {pod.name} (labels {labels}; differs: {_difference(service, pod)})"
            )
        if not candidates:
            lines.append(f"no pod in {namespace} shares a label with the selector")
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.WARNING,
                summary=f"Service {namespace}/{service.meta.name} selects {selector}, which matches no pod",
                objects=refs(service.ref, *(p.ref for _, p in candidates)),
                evidence=tuple(lines),
            )
        )
    return findings
