"""`crash-loop`: CrashLoopBackOff, or repeated restarts with a recent crash, not explained by a more
specific finding (`bot.diagnose` drops it when one covers the pod). Quotes the previous log's last
error lines and the exit code. No automatic plan.

Not a finding: restarts long ago on a container that has been Ready since (already recovered).
"""

from __future__ import annotations

from bot.evidence import Evidence
from bot.model import Finding, Severity
from handlers.base import (
    Settings,
    containers_with_status,
    describe_status,
    is_recent,
    last_error_lines,
    live_pods,
    refs,
)

CODE = "crash-loop"
ALERTS = ("KubePodCrashLooping", "KubePodNotReady", "KubeContainerWaiting")


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    for pod in live_pods(evidence):
        for container, status in containers_with_status(pod):
            waiting = status.state.state == "waiting" and status.state.reason == "CrashLoopBackOff"
            last = status.last_state
            flapping = (
                status.restart_count >= settings.restart_threshold
                and last is not None
                and last.state == "terminated"
                and last.exit_code not in (0, None)
                and is_recent(evidence, last.finished_at, settings)
            )
            if not (waiting or flapping):
                continue
            previous = evidence.log(pod.namespace, pod.name, status.name, previous=True)
            lines = [f"{pod.ref}: {describe_status(status)}"]
            if last is not None and last.message:
                lines.append(f"termination message: {last.message.strip()[:400]}")
            quoted = last_error_lines(previous) if previous else []
            lines += [f"previous log: {x}" for x in quoted]
            if not previous:
                lines.append("previous log: not available")
            code = (
                f"exit code {last.exit_code}"
                if last is not None and last.exit_code is not None
                else "unknown exit code"
            )
            owner = evidence.owning_workload(pod)
            findings.append(
                Finding(
                    code=CODE,
                    severity=Severity.CRITICAL if waiting else Severity.WARNING,
                    summary=(
                        f"{pod.name} ({container.name}) keeps crashing: "
                        f"{'CrashLoopBackOff' if waiting else 'restarting'} after "
                        f"{status.restart_count} restarts, "
                        f"{code}" + (f": {quoted[-1]}" if quoted else "")
                    ),
                    objects=refs(pod.ref, owner.ref if owner else None),
                    evidence=tuple(lines),
                )
            )
    return findings
