"""`liveness-probe-failing`: the kubelet restarts a container because its liveness (or startup) probe
fails. Read from the kubelet's events: `Unhealthy` — `Liveness probe failed: HTTP probe failed with
statuscode: 500`, `Startup probe failed: ... connect: connection refused` — and `Killing` —
`Container api failed liveness probe, will be restarted`.

The finding sets the probe (handler, port, path, delay, period, timeout, failure threshold) against
the container's ports and says what the kubelet saw (nothing listening, a 404 path, a timeout). One
finding per workload and container. `crash-loop` on the same container is `caused_by` it (crash_loop
asks `restarted_by_probe`). No automatic plan: whether the app or the probe is wrong needs a person.

Not a finding: a probe that failed without the container being restarted (failures below the
threshold), restarts long ago with the container Ready since, readiness probe failures (those are
`readiness-probe-failing`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.evidence import Container, ContainerStatus, Event, Evidence, Pod, Probe
from bot.model import Finding, ObjectRef, Severity
from handlers.base import (
    Settings,
    clip,
    containers_with_status,
    describe_exit,
    event_container,
    is_recent,
    live_pods,
    owner_key,
    pods_phrase,
    refs,
)
from handlers.readiness_probe import describe_probe, port_problem

CODE = "liveness-probe-failing"
ALERTS = ("KubePodCrashLooping", "KubePodNotReady", "KubeContainerWaiting")

_KILLED = re.compile(r"^Container (\S+) failed (liveness|startup) probe, will be restarted")
_UNHEALTHY = re.compile(r"^(Liveness|Startup) probe (?:failed|errored):\s*(.*)", re.DOTALL)


@dataclass(frozen=True)
class ProbeRestarts:
    """Why the kubelet restarted one container: which probe, the kill and failure events."""

    kind: str  # "liveness" | "startup"
    probe: Probe | None
    kills: tuple[Event, ...]
    failures: tuple[Event, ...]


def _probe(container: Container, kind: str) -> Probe | None:
    return container.liveness_probe if kind == "liveness" else container.startup_probe


def restarted_by_probe(
    evidence: Evidence, pod: Pod, container: Container, status: ContainerStatus, settings: Settings
) -> ProbeRestarts | None:
    """The recent liveness/startup probe restarts of this container, or None.

    A `Killing ... failed liveness probe` event names the container; `Unhealthy` events name it in
    their fieldPath, or are the only container's with that probe. Failures alone count only when the
    container did restart recently (below the threshold the kubelet does not kill it)."""
    kills: dict[str, list[Event]] = {"liveness": [], "startup": []}
    failures: dict[str, list[Event]] = {"liveness": [], "startup": []}
    for event in evidence.events_for(pod.ref):
        if not is_recent(evidence, event.last_seen, settings):
            continue
        if event.reason == "Killing":
            match = _KILLED.match(event.message)
            if match and match.group(1) == container.name:
                kills[match.group(2)].append(event)
        elif event.reason == "Unhealthy":
            match = _UNHEALTHY.match(event.message)
            if not match:
                continue
            kind = match.group(1).lower()
            named = event_container(event)
            if named == container.name or (
                not named
                and _probe(container, kind) is not None
                and sum(1 for c in pod.spec.containers if _probe(c, kind) is not None) == 1
            ):
                failures[kind].append(event)
    last = status.last_state
    restarted = (
        status.restart_count > 0
        and last is not None
        and last.state == "terminated"
        and is_recent(evidence, last.finished_at, settings)
    )
    for kind in ("liveness", "startup"):
        if kills[kind] or (failures[kind] and restarted):
            return ProbeRestarts(kind, _probe(container, kind), tuple(kills[kind]), tuple(failures[kind]))
    return None


def _what_it_saw(restarts: ProbeRestarts, container: Container) -> str:
    """What the probe's failure output says, in words (or "" when it says nothing we recognise)."""
    probe = restarts.probe
    text = " ".join(_UNHEALTHY.sub(r"\2", e.message) for e in restarts.failures[-2:])
    status = re.search(r"statuscode: (\d{3})", text)
    if probe is not None and (problem := port_problem(probe, container)):
        return problem
    if status and status.group(1) == "404":
        return f"{probe.path if probe else 'the probe path'} answers 404: the path does not exist"
    if status:
        return f"the app answers HTTP {status.group(1)} to the probe: it reports itself unhealthy"
    if "connection refused" in text:
        delay = f" {probe.initial_delay_seconds}s after start" if probe is not None else ""
        hint = (
            "; if the app needs longer to start, give it a startupProbe or a longer initialDelaySeconds"
            if restarts.kind == "liveness"
            else "; the startup probe's failureThreshold × periodSeconds may be shorter than the app's start"
        )
        return f"nothing listens on the probed port when the kubelet checks{delay}{hint}"
    if re.search(r"deadline exceeded|Client\.Timeout|timed out|timeout", text, re.IGNORECASE):
        timeout = f" of {probe.timeout_seconds}s" if probe is not None else ""
        return f"the probe times out (timeoutSeconds{timeout}): the app answers too slowly or not at all"
    return ""


def _describe(probe: Probe | None) -> str:
    if probe is None:
        return "not in the pod spec any more"
    return (
        f"{describe_probe(probe)} (initialDelay {probe.initial_delay_seconds}s, "
        f"period {probe.period_seconds}s, timeout {probe.timeout_seconds}s, "
        f"failureThreshold {probe.failure_threshold})"
    )


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    groups: dict[tuple[ObjectRef, str, str], list[tuple[Pod, Container, ContainerStatus, ProbeRestarts]]] = {}
    for pod in live_pods(evidence):
        for container, status in containers_with_status(pod):
            if status.init:
                continue
            restarts = restarted_by_probe(evidence, pod, container, status, settings)
            if restarts is not None:
                key = (owner_key(evidence, pod), container.name, restarts.kind)
                groups.setdefault(key, []).append((pod, container, status, restarts))
    findings: list[Finding] = []
    for (owner, name, kind), members in groups.items():
        pod, container, status, restarts = members[0]
        pods = [m[0] for m in members]
        saw = _what_it_saw(restarts, container)
        ports = (
            ", ".join(f"{p.name + ':' if p.name else ''}{p.container_port}" for p in container.ports)
            or "none declared"
        )
        lines = [
            f"{kind} probe: {_describe(restarts.probe)}",
            f"container ports: {ports}",
        ]
        for p, _, s, _ in members[:5]:
            exit_text = describe_exit(s.last_state)
            lines.append(
                f"{p.ref}: container {name} restarts={s.restart_count}"
                + (f", last {exit_text}" if exit_text else "")
                + (f", state {s.state.state} ({s.state.reason})" if s.state.reason else "")
            )
        for event in restarts.failures[-2:] + restarts.kills[-1:]:
            lines.append(f"event: {event.reason} x{event.count}: {clip(event.message)}")
        if saw:
            lines.append(saw)
        crashing = any(s.state.reason == "CrashLoopBackOff" for _, _, s, _ in members)
        restarts_total = sum(s.restart_count for _, _, s, _ in members)
        probe_text = describe_probe(restarts.probe) if restarts.probe is not None else f"its {kind} probe"
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.CRITICAL if crashing else Severity.WARNING,
                summary=(
                    f"{pods_phrase(evidence, pods)}: container {name} is restarted by its {kind} probe "
                    f"({probe_text}), {restarts_total} restarts" + (f": {saw}" if saw else "")
                ),
                objects=refs(*(p.ref for p in pods), owner if owner.kind != "Pod" else None),
                evidence=tuple(lines),
            )
        )
    return findings
