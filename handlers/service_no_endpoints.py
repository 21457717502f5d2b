"""`service-no-endpoints`: a Service selects pods but has no ready endpoints.

No plan of its own: the cause is on the selected pods. `bot.diagnose` links `caused_by` to the
findings on those pods (this finding lists them in `objects` for that purpose).
"""

from __future__ import annotations

from bot.evidence import Evidence
from bot.model import Finding, ObjectRef, Severity
from handlers.base import Settings, refs

CODE = "service-no-endpoints"
ALERTS = ("KubeServiceNoEndpoints", "TargetDown", "PrometheusDown", "LokiDown", "absent")


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    # One finding per namespace: the Services share their symptom, each one's cause is on its pods.
    per_namespace: dict[str, tuple[list[ObjectRef], list[ObjectRef], list[str]]] = {}
    for service in evidence.services:
        if not service.selector or service.type == "ExternalName":
            continue
        namespace = service.meta.namespace or ""
        pods = [p for p in evidence.pods_selected_by(namespace, service.selector) if not p.meta.deleting]
        if not pods:
            continue  # selects nothing: service-selector-mismatch says why
        endpoints = evidence.endpoints_for(namespace, service.meta.name)
        if endpoints is not None:
            if endpoints.ready:
                continue
            not_ready = ", ".join(a.pod or a.ip for a in endpoints.not_ready) or "none"
            source = f"{endpoints.source} {service.meta.name}: no ready addresses (not ready: {not_ready})"
        else:
            if any(p.ready for p in pods):
                continue
            source = f"no Endpoints object was read for {service.meta.name}; judged from pod readiness"
        selector = ",".join(f"{k}={v}" for k, v in sorted(service.selector.items()))
        ports = ", ".join(f"{p.port}/{p.protocol}" for p in service.ports) or "no ports"
        services, pod_refs, lines = per_namespace.setdefault(namespace, ([], [], []))
        services.append(service.ref)
        lines += [f"Service {service.meta.name} ({service.type}, {ports}) selects {selector}", source]
        for pod in pods:
            cond = pod.condition("Ready")
            why = f" ({cond.reason})" if cond is not None and cond.reason and not pod.ready else ""
            state = "Ready" if pod.ready else "not Ready"
            lines.append(f"  selected pod {pod.name}: {pod.phase or 'unknown phase'}, {state}{why}")
            pod_refs.append(pod.ref)
    findings: list[Finding] = []
    for namespace, (services, pod_refs, lines) in sorted(per_namespace.items()):
        names = ", ".join(s.name for s in services)
        plural = "s" if len(services) > 1 else ""
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.WARNING,
                summary=(
                    f"Service{plural} {names} in {namespace} ha{'ve' if plural else 's'} no ready endpoints: "
                    "the selected pods are not Ready, so clients (and DNS for headless Services) "
                    "cannot reach them"
                ),
                objects=refs(*services, *pod_refs),
                evidence=tuple(lines),
            )
        )
    return findings
