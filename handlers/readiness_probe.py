"""`readiness-probe-failing`: a Running container that is not Ready while the kubelet reports recent
readiness probe failures. Compares the probe's target with the container's ports. No automatic plan."""

from __future__ import annotations

from bot.evidence import Container, Evidence, Probe
from bot.model import Finding, Severity
from handlers.base import Settings, clip, containers_with_status, is_recent, live_pods, refs

CODE = "readiness-probe-failing"
ALERTS = (
    "KubePodNotReady",
    "KubeStatefulSetReplicasMismatch",
    "KubeDeploymentReplicasMismatch",
    "TargetDown",
)


def describe_probe(probe: Probe) -> str:
    if probe.handler == "httpGet":
        return f"HTTP GET {probe.path or '/'} on port {probe.port}"
    if probe.handler in ("tcpSocket", "grpc"):
        return f"{probe.handler} on port {probe.port}"
    if probe.handler == "exec":
        return f"exec {' '.join(probe.command)}"
    return "no handler"


def port_problem(probe: Probe, container: Container) -> str:
    """Why the probe's port cannot be right, or "" when it plausibly is."""
    if probe.port is None or probe.handler not in ("httpGet", "tcpSocket", "grpc"):
        return ""
    if isinstance(probe.port, str):
        names = [p.name for p in container.ports if p.name]
        if probe.port not in names:
            defined = ", ".join(names) or "no named ports"
            return f"the probe uses port name {probe.port!r}, which the container does not define ({defined})"
        return ""
    numbers = [p.container_port for p in container.ports]
    if numbers and probe.port not in numbers:
        return (
            f"the probe targets port {probe.port}, but the container declares {', '.join(map(str, numbers))}"
        )
    return ""


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    for pod in live_pods(evidence):
        failures = [
            e
            for e in evidence.events_for(pod.ref)
            if e.reason == "Unhealthy"
            and "readiness probe" in e.message.lower()
            and is_recent(evidence, e.last_seen, settings)
        ]
        if not failures:
            continue
        for container, status in containers_with_status(pod):
            if (
                status.init
                or status.ready
                or status.state.state != "running"
                or container.readiness_probe is None
            ):
                continue
            probe = container.readiness_probe
            problem = port_problem(probe, container)
            ports = (
                ", ".join(f"{p.name + ':' if p.name else ''}{p.container_port}" for p in container.ports)
                or "none declared"
            )
            lines = [
                f"{pod.ref}: container {container.name} Running, not Ready",
                f"readiness probe: {describe_probe(probe)} (initialDelay {probe.initial_delay_seconds}s, "
                f"period {probe.period_seconds}s, failureThreshold {probe.failure_threshold})",
                f"container ports: {ports}",
            ]
            lines += [f"event: {e.reason} x{e.count}: {clip(e.message)}" for e in failures[-2:]]
            if problem:
                lines.append(problem)
            findings.append(
                Finding(
                    code=CODE,
                    severity=Severity.WARNING,
                    summary=f"{pod.name} ({container.name}) is Running but its readiness probe fails"
                    + (f": {problem}" if problem else f" ({describe_probe(probe)})"),
                    objects=refs(pod.ref),
                    evidence=tuple(lines),
                )
            )
    return findings
