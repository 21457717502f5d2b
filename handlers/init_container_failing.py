"""`init-container-failing`: an init container fails, so the pod's app containers never start — kubectl
shows `Init:Error` (it exited non-zero) or `Init:CrashLoopBackOff` (it keeps doing so). Quotes the line
of the init container's log that names the error (`quote_error`) with its exit code and reason. One
finding per workload and init container. `crash-loop` on the same init container is replaced by it.
No automatic plan.

Not a finding: init containers that completed (exit 0), one that failed once and then succeeded (the
app containers run), and init containers waiting on an image or config (image-pull-failure and
container-config-error say why).
"""

from __future__ import annotations

from bot.evidence import ContainerState, ContainerStatus, Evidence, Pod
from bot.model import Finding, ObjectRef, Severity
from handlers.base import (
    ErrorQuote,
    Settings,
    clip,
    describe_exit,
    live_pods,
    owner_key,
    pods_phrase,
    quote_error,
    refs,
)

CODE = "init-container-failing"
ALERTS = ("KubePodNotReady", "KubePodCrashLooping", "KubeContainerWaiting")


def _failure(status: ContainerStatus) -> tuple[str, ContainerState | None] | None:
    """(kubectl's status word, the failed run's terminated state) when this init container fails now."""
    state = status.state
    if state.state == "waiting" and state.reason == "CrashLoopBackOff":
        return "Init:CrashLoopBackOff", status.last_state
    if state.state == "terminated" and state.exit_code not in (0, None):
        return "Init:Error", state
    last = status.last_state
    if (
        state.state == "running"
        and status.restart_count >= 2
        and last is not None
        and last.exit_code not in (0, None)
    ):
        return "Init:Error (running again)", last  # between two back-offs
    return None


def _app_started(pod: Pod) -> bool:
    return any(s.state.state == "running" or s.started for s in pod.container_statuses)


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    groups: dict[tuple[ObjectRef, str], list[tuple[Pod, ContainerStatus, str, ContainerState | None]]] = {}
    for pod in live_pods(evidence):
        if _app_started(pod):
            continue
        for status in pod.init_container_statuses:
            found = _failure(status)
            if found is not None:
                groups.setdefault((owner_key(evidence, pod), status.name), []).append((pod, status, *found))
                break  # init containers run in order: the first failing one is the one that blocks
    findings: list[Finding] = []
    for (owner, name), members in groups.items():
        pods = [m[0] for m in members]
        quote = ErrorQuote()
        message = ""
        for member, _, _, member_failed in members:
            lines = evidence.log(member.namespace, member.name, name, previous=True) or evidence.log(
                member.namespace, member.name, name
            )
            candidate = quote_error(lines)
            if candidate.named or (candidate.lines and not quote.lines):
                quote = candidate
            if member_failed is not None and member_failed.message and not message:
                message = member_failed.message.strip()
            if quote.named:
                break
        pod, status, word, failed = members[0]
        container = pod.spec.container(name)
        exit_text = describe_exit(failed) or "unknown exit code"
        headline = quote.headline if quote.named else (message.splitlines()[-1] if message else "")
        evidence_lines = [
            f"init container {name}"
            + (
                f" ({container.image}, command: {' '.join(container.argv)})"
                if container and container.argv
                else ""
            )
            + (f" ({container.image})" if container and not container.argv else "")
        ]
        for p, s, w, f in members[:5]:
            evidence_lines.append(
                f"{p.ref}: {w}, restarts={s.restart_count}"
                + (f", {describe_exit(f)}" if describe_exit(f) else "")
            )
        if message:
            evidence_lines.append(f"termination message: {clip(message)}")
        if quote.lines:
            evidence_lines += [f"{name} log: {x}" for x in quote.lines]
        else:
            evidence_lines.append(f"{name} log: not available")
        waiting_apps = [s.name for s in pod.container_statuses]
        if waiting_apps:
            evidence_lines.append(f"app containers not started: {', '.join(waiting_apps)}")
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.CRITICAL,
                summary=(
                    f"{pods_phrase(evidence, pods)}: init container {name} fails ({word}, {exit_text})"
                    + (f": {clip(headline, 240)}" if headline else "")
                    + "; the app containers never start"
                ),
                objects=refs(*(p.ref for p in pods), owner if owner.kind != "Pod" else None),
                evidence=tuple(evidence_lines),
            )
        )
    return findings
