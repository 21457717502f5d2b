"""`ingress-backend-invalid`: an Ingress routes to something that cannot answer: a Service that does
not exist, a port the Service does not have, a Service with no ready endpoints, an IngressClass that
does not exist, or a TLS Secret that does not exist. Names the rule (host and path) and the backend.

The Service is in the finding's objects, so a finding on it (service-no-endpoints) is its cause
(bot.diagnose links them). Nothing is claimed missing from a list that could not be read (RBAC, or a
bundle without that kind). No automatic plan."""

from __future__ import annotations

from bot.evidence import Evidence, Ingress, IngressBackend
from bot.model import Finding, ObjectRef, Severity
from handlers.base import Settings, refs

CODE = "ingress-backend-invalid"
ALERTS = ("KubeIngressBackendDown", "NginxIngressBackendDown", "ProbeFailed", "BlackboxProbeFailed")


def _routes(ingress: Ingress) -> list[tuple[str, IngressBackend]]:
    out: list[tuple[str, IngressBackend]] = []
    for rule in ingress.rules:
        for path in rule.paths:
            out.append((f"{rule.host or '*'}{path.path or '/'}", path.backend))
    if ingress.default_backend is not None:
        out.append(("default backend", ingress.default_backend))
    return out


def _backend_problem(
    evidence: Evidence, namespace: str, backend: IngressBackend
) -> tuple[str, ObjectRef | None]:
    """What is wrong with one backend ("" when nothing is) and the Service it names."""
    if not backend.service_name:
        return "", None
    ref = ObjectRef("Service", backend.service_name, namespace)
    service = evidence.service(namespace, backend.service_name)
    if service is None:
        if evidence.unlisted("services", namespace) or not _services_listed(evidence, namespace):
            return "", None
        return f"Service {backend.service_name} does not exist in {namespace}", ref
    if backend.port_number is not None:
        if service.ports and all(p.port != backend.port_number for p in service.ports):
            ports = ", ".join(str(p.port) + (f" ({p.name})" if p.name else "") for p in service.ports)
            return f"Service {backend.service_name} has no port {backend.port_number} (it has {ports})", ref
    elif backend.port_name and service.ports and all(p.name != backend.port_name for p in service.ports):
        names = ", ".join(p.name or str(p.port) for p in service.ports)
        return f"Service {backend.service_name} has no port named {backend.port_name} (it has {names})", ref
    if service.type == "ExternalName":
        return "", ref
    endpoints = evidence.endpoints_for(namespace, backend.service_name)
    if endpoints is not None and not endpoints.ready and service.selector:
        waiting = f" ({len(endpoints.not_ready)} not ready)" if endpoints.not_ready else ""
        return f"Service {backend.service_name} has no ready endpoints{waiting}", ref
    return "", ref


def _services_listed(evidence: Evidence, namespace: str) -> bool:
    """A bundle without services says nothing about them; one with some in the namespace does."""
    return any(s.meta.namespace == namespace for s in evidence.services)


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    for ingress in evidence.ingresses:
        namespace = ingress.meta.namespace or ""
        problems: list[str] = []
        objects: list[ObjectRef | None] = [ingress.ref]
        seen: set[tuple[str, str]] = set()
        for where, backend in _routes(ingress):
            problem, service = _backend_problem(evidence, namespace, backend)
            if not problem or (where, problem) in seen:
                continue
            seen.add((where, problem))
            problems.append(f"rule {where} -> {backend}: {problem}")
            objects.append(service)
        if (
            ingress.class_name
            # An annotation-only class (kubernetes.io/ingress.class) is the legacy form: controllers
            # match it without an IngressClass object, so only spec.ingressClassName is checked.
            and ingress.meta.annotations.get("kubernetes.io/ingress.class") != ingress.class_name
            and evidence.ingress_classes
            and not evidence.unlisted("ingressclasses")
            and evidence.ingress_class(ingress.class_name) is None
        ):
            known = ", ".join(c.meta.name for c in evidence.ingress_classes)
            problems.append(f"IngressClass {ingress.class_name} does not exist (the cluster has: {known})")
            objects.append(ObjectRef("IngressClass", ingress.class_name))
        secrets_known = not evidence.unlisted("secrets", namespace) and any(
            s.meta.namespace == namespace for s in evidence.secrets
        )
        for tls in ingress.tls:
            if tls.secret_name and secrets_known and not evidence.secret_exists(namespace, tls.secret_name):
                hosts = ", ".join(tls.hosts) or "all hosts"
                problems.append(f"TLS Secret {tls.secret_name} (for {hosts}) does not exist in {namespace}")
                objects.append(ObjectRef("Secret", tls.secret_name, namespace))
        if not problems:
            continue
        routes = len(_routes(ingress))
        lines = [
            f"Ingress {ingress.meta.name}: class {ingress.class_name or '(default)'}, {routes} backend(s)"
        ]
        lines += problems
        for event in evidence.events_for(ingress.ref)[-2:]:
            if event.type == "Warning":
                lines.append(f"event: {event.reason} x{event.count}: {event.message}")
        first = problems[0]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.WARNING,
                summary=f"Ingress {namespace}/{ingress.meta.name}: {first}{more}",
                objects=refs(*objects),
                evidence=tuple(lines),
            )
        )
    return findings
