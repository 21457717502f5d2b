"""`crash-loop`: CrashLoopBackOff, or repeated restarts with a recent crash, not explained by a more
specific finding (`bot.diagnose` drops it when one covers the pod). Quotes the line of the previous
log that names the error (`quote_error`: the exception of a traceback, a `panic:`, an error record's
message), with the exit code and reason; without one, the termination message or the last lines.
No automatic plan.

`caused_by` liveness-probe-failing when the kubelet restarts it for failing its liveness or startup
probe.

Not a finding: restarts long ago on a container that has been Ready since (already recovered).
"""

from __future__ import annotations

from bot.evidence import Evidence
from bot.model import Finding, Severity
from handlers.base import (
    Settings,
    clip,
    containers_with_status,
    describe_exit,
    describe_status,
    is_recent,
    live_pods,
    quote_error,
    refs,
)
from handlers.liveness_probe_failing import CODE as LIVENESS_CODE
from handlers.liveness_probe_failing import restarted_by_probe

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
            # While it waits to restart, the current log is the crashed run's (what `kubectl logs` shows).
            previous = evidence.log(pod.namespace, pod.name, status.name, previous=True) or evidence.log(
                pod.namespace, pod.name, status.name
            )
            lines = [f"{pod.ref}: {describe_status(status)}"]
            message = last.message.strip() if last is not None and last.message else ""
            if message:
                lines.append(f"termination message: {message[:400]}")
            quote = quote_error(previous)
            lines += [f"previous log: {x}" for x in quote.lines]
            if not previous:
                lines.append("previous log: not available")
            # A summary quotes a line that names the error; the fallback tail stays in the evidence.
            headline = quote.headline if quote.named else (message.splitlines()[-1] if message else "")
            code = describe_exit(last) or "unknown exit code"
            owner = evidence.owning_workload(pod)
            findings.append(
                Finding(
                    code=CODE,
                    severity=Severity.CRITICAL if waiting else Severity.WARNING,
                    summary=(
                        f"{pod.name} ({container.name}) keeps crashing: "
                        f"{'CrashLoopBackOff' if waiting else 'restarting'} after "
                        f"{status.restart_count} restarts, "
                        f"{code}" + (f": {clip(headline, 240)}" if headline else "")
                    ),
                    objects=refs(pod.ref, owner.ref if owner else None),
                    evidence=tuple(lines),
                    # The kubelet kills it for failing its liveness probe: that finding is the cause.
                    caused_by=(LIVENESS_CODE,)
                    if not status.init and restarted_by_probe(evidence, pod, container, status, settings)
                    else (),
                )
            )
    return findings
