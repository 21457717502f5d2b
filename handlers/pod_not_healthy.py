"""`pod-not-healthy` (catch-all): a pod in scope that is not Running and Ready (Succeeded, for pods
that run to completion), or that restarted recently, whatever the reason. It says what is known —
the phase, each container's state and reason, the last warning events about the pod and its owners,
the log line that names the error — so nothing wrong is silent when no specific handler knows the
failure. Any other finding that names the pod replaces it (`bot.correlate`). No automatic plan.

Not findings (a healthy cluster has these all the time): pods being deleted; completed pods; a
Job's failed attempt when the Job (or a later run of its CronJob) succeeded since; a replaced pod of
a ReplicaSet/StatefulSet/DaemonSet that failed long ago; a pod younger than the start-up grace
(`Settings.startup_grace_seconds`, longer when its readiness probe needs longer) that is still being
created, initialised or started; restarts long ago with the container Ready since.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from bot.evidence import ContainerStatus, Event, Evidence, Job, Pod
from bot.model import Finding, ObjectRef, Severity
from handlers.base import (
    Settings,
    clip,
    containers_with_status,
    describe_exit,
    describe_status,
    failing_logs,
    is_recent,
    quote_error,
    refs,
)

CODE = "pod-not-healthy"
ALERTS = ("KubePodNotReady", "KubeContainerWaiting", "KubePodCrashLooping", "KubeJobFailed")

# Waiting reasons of a container that is on its way up, not stuck (kubelet's words).
STARTING_REASONS = frozenset({"", "ContainerCreating", "PodInitializing"})
# Controllers that replace a failed pod with a new one: the old one is history once it is old.
REPLACING_OWNERS = frozenset({"ReplicaSet", "StatefulSet", "DaemonSet"})


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    for pod in evidence.pods:
        problem = assess(evidence, pod, settings)
        if problem is None:
            continue
        owner = evidence.owning_workload(pod)
        owner_ref = owner.ref if owner is not None else _controller_ref(pod)
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.WARNING,
                summary=f"{pod.name} is not healthy: {problem}",
                objects=refs(pod.ref, owner_ref),
                evidence=tuple(_evidence(evidence, pod, settings)),
            )
        )
    return findings


# ---------------------------------------------------------------------------------------------
# what is wrong with a pod (None: nothing)
# ---------------------------------------------------------------------------------------------


def assess(evidence: Evidence, pod: Pod, settings: Settings) -> str | None:
    """A short description of what is wrong with `pod`, or None when it is healthy (or finished,
    replaced, still starting)."""
    if pod.meta.deleting or pod.phase == "Succeeded":
        return None
    if pod.phase == "Failed":
        if _failure_is_history(evidence, pod, settings):
            return None
        what = f"Failed ({pod.reason})" if pod.reason else "Failed"
        exits = [describe_exit(s.state) for s in pod.container_statuses if s.state.state == "terminated"]
        failed_exits = [e for e in exits if e and not e.startswith("exit code 0")]
        return what + (f", {failed_exits[0]}" if failed_exits else "")
    if pod.phase == "Unknown":
        return "phase Unknown (its node stopped reporting its state)"
    restarted = _recent_restarts(evidence, pod, settings)
    if pod.phase == "Running" and _ready(pod):
        if not restarted:
            return None
        status, count = restarted[0]
        last = describe_exit(status.last_state)
        return (
            f"container {status.name} restarted {count} time(s), the last recently ({last or 'no exit code'})"
        )
    if not restarted and _still_starting(evidence, pod, settings):
        return None
    return _not_ready_description(evidence, pod)


def _ready(pod: Pod) -> bool:
    """Ready per the pod's Ready condition; without one (hand-made objects), per its containers."""
    cond = pod.condition("Ready")
    if cond is not None:
        return cond.status == "True"
    return all(s.ready for s in pod.container_statuses)


def _seconds_since(evidence: Evidence, when: datetime | None) -> float | None:
    if when is None or evidence.observed_at is None:
        return None
    return (evidence.observed_at - when).total_seconds()


def grace_seconds(pod: Pod, settings: Settings) -> float:
    """How long `pod` may take to become Ready: the start-up grace, or what its readiness probes
    allow (initial delay + period × failure threshold), whichever is longer."""
    grace = settings.startup_grace_seconds
    for container in pod.spec.containers:
        probe = container.readiness_probe
        if probe is not None:
            grace = max(grace, probe.initial_delay_seconds + probe.period_seconds * probe.failure_threshold)
    return grace


def _still_starting(evidence: Evidence, pod: Pod, settings: Settings) -> bool:
    """Young, and every container is being created, initialised or started — not stuck on an error."""
    age = _seconds_since(evidence, pod.start_time or pod.meta.created_at)
    if age is None or age > grace_seconds(pod, settings):
        return False
    for status in pod.init_container_statuses + pod.container_statuses:
        state = status.state
        if state.state == "waiting" and state.reason not in STARTING_REASONS:
            return False
        if state.state == "terminated" and state.exit_code not in (0, None):
            return False
    return not any(
        e.type == "Warning" and e.reason == "FailedScheduling" for e in evidence.events_for(pod.ref)
    )


def _recent_restarts(evidence: Evidence, pod: Pod, settings: Settings) -> list[tuple[ContainerStatus, int]]:
    out: list[tuple[ContainerStatus, int]] = []
    for status in pod.init_container_statuses + pod.container_statuses:
        last = status.last_state
        if status.init and _init_done(status):
            continue  # an init container that failed, retried and completed: the pod went on
        if (
            status.restart_count > 0
            and last is not None
            and last.state == "terminated"
            and is_recent(evidence, last.finished_at, settings)
        ):
            out.append((status, status.restart_count))
    return out


def _not_ready_description(evidence: Evidence, pod: Pod) -> str:
    phase = pod.phase or "no phase"
    if pod.phase == "Pending" and not pod.node_name:
        age = _seconds_since(evidence, pod.meta.created_at)
        return "Pending, not scheduled to a node" + (f" after {_duration(age)}" if age is not None else "")
    stuck = [_short_state(s) for s in pod.init_container_statuses if not _init_done(s)]
    stuck += [_short_state(s) for s in pod.container_statuses if not s.ready]
    missing = [c.name for c in pod.spec.containers if pod.status_of(c.name) is None]
    parts = [p for p in stuck if p] + [f"container {name} has no status yet" for name in missing]
    state = f"{phase}" if pod.phase != "Running" else "Running but not Ready"
    cond = pod.condition("Ready")
    since = (
        _seconds_since(evidence, cond.last_transition) if cond is not None and cond.status != "True" else None
    )
    if since is not None and since > 0:
        state += f" for {_duration(since)}"
    return state + (f" ({'; '.join(parts)})" if parts else "")


def _init_done(status: ContainerStatus) -> bool:
    return status.state.state == "terminated" and status.state.exit_code == 0


def _short_state(status: ContainerStatus) -> str:
    kind = "init container" if status.init else "container"
    state = status.state
    text = f"{kind} {status.name} {state.state}" + (f" ({state.reason})" if state.reason else "")
    if state.state == "running" and not status.init:
        text += ", not ready"
    return text


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _failure_is_history(evidence: Evidence, pod: Pod, settings: Settings) -> bool:
    """A failed pod that no longer matters: its Job (or a later Job of the same CronJob) succeeded,
    or its controller replaced it and the failure is not recent."""
    owner = pod.meta.controller
    if owner is None:
        return False  # a bare pod: nothing replaces it
    if owner.kind == "Job":
        return _job_succeeded_since(evidence, pod, owner.name)
    if owner.kind in REPLACING_OWNERS:
        return not is_recent(evidence, _failed_at(pod), settings)
    return False


def _failed_at(pod: Pod) -> datetime | None:
    times = [s.state.finished_at for s in pod.container_statuses if s.state.finished_at is not None]
    ready = pod.condition("Ready")
    if ready is not None and ready.last_transition is not None:
        times.append(ready.last_transition)
    return max(times) if times else None


def _job_succeeded_since(evidence: Evidence, pod: Pod, job_name: str) -> bool:
    job = evidence.job(pod.namespace, job_name)
    if job is not None and job.complete:
        return True
    started = pod.start_time or pod.meta.created_at
    # Without the Job (not collected): a later attempt of the same Job that succeeded.
    for other in evidence.pods_in(pod.namespace):
        controller = other.meta.controller
        if (
            other.phase == "Succeeded"
            and controller is not None
            and controller.kind == "Job"
            and controller.name == job_name
            and _after(other.start_time or other.meta.created_at, started)
        ):
            return True
    return job is not None and job_superseded(evidence, job)


def job_superseded(evidence: Evidence, job: Job) -> bool:
    """A later Job of the same CronJob completed: this one's failure is history."""
    cron = job.meta.controller
    if cron is not None and cron.kind == "CronJob":
        for other_job in evidence.jobs:
            parent = other_job.meta.controller
            if (
                other_job is not job
                and other_job.meta.namespace == job.meta.namespace
                and parent is not None
                and parent.kind == "CronJob"
                and parent.name == cron.name
                and other_job.complete
                and _after(
                    other_job.start_time or other_job.meta.created_at, job.start_time or job.meta.created_at
                )
            ):
                return True
    return False


def _after(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and (b is None or a >= b)


def _controller_ref(pod: Pod) -> ObjectRef | None:
    owner = pod.meta.controller
    return ObjectRef(owner.kind, owner.name, pod.namespace) if owner is not None else None


# ---------------------------------------------------------------------------------------------
# what the finding shows
# ---------------------------------------------------------------------------------------------

EVENTS_PER_OBJECT = 3


def owner_refs(evidence: Evidence, pod: Pod) -> list[ObjectRef]:
    """The pod's controller and, above it, the top-level workload (ReplicaSet -> Deployment)."""
    out: list[ObjectRef] = []
    direct = _controller_ref(pod)
    if direct is not None:
        out.append(direct)
    top = evidence.owning_workload(pod)
    if top is not None and top.ref not in out:
        out.append(top.ref)
    if direct is not None and direct.kind == "Job":
        job = evidence.job(pod.namespace, direct.name)
        cron = job.meta.controller if job is not None else None
        if cron is not None:
            out.append(ObjectRef(cron.kind, cron.name, pod.namespace))
    return out


def warning_events(evidence: Evidence, ref: ObjectRef, limit: int = EVENTS_PER_OBJECT) -> list[Event]:
    """The last `limit` Warning events about `ref`, newest last."""
    events = [e for e in evidence.events_for(ref) if e.type == "Warning"]
    events.sort(key=lambda e: (e.last_seen is None, e.last_seen or datetime.min))
    return events[-limit:]


def event_line(ref: ObjectRef, event: Event) -> str:
    count = f" x{event.count}" if event.count > 1 else ""
    return f"event on {ref.kind.lower()}/{ref.name}: {event.reason}{count}: {clip(event.message, 300)}"


def _evidence(evidence: Evidence, pod: Pod, settings: Settings) -> Iterable[str]:
    head = f"{pod.ref}: phase {pod.phase or 'unknown'}"
    if pod.reason:
        head += f", reason {pod.reason}"
    if pod.message:
        head += f": {clip(pod.message, 300)}"
    if pod.node_name:
        head += f", on node {pod.node_name}"
    yield head
    for cond in pod.conditions:
        if cond.status != "True" and cond.type in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
            detail = ": ".join(x for x in (cond.reason, clip(cond.message, 300)) if x)
            yield f"condition {cond.type}={cond.status}" + (f" ({detail})" if detail else "")
    for status in pod.init_container_statuses + pod.container_statuses:
        line = ("init " if status.init else "") + describe_status(status)
        if status.state.message:
            line += f": {clip(status.state.message, 300)}"
        yield line
    for ref in [pod.ref, *owner_refs(evidence, pod)]:
        for event in warning_events(evidence, ref):
            yield event_line(ref, event)
    for container, status in containers_with_status(pod):
        if status.ready and not (status.restart_count and status.last_state is not None):
            continue
        if status.init and _init_done(status):
            continue
        quote = quote_error(failing_logs(evidence, pod, status, settings))
        for line in quote.lines[-3:]:
            yield f"log {container.name}: {line}"
