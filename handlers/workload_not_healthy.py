"""`workload-not-healthy` (catch-all): a Deployment, StatefulSet, DaemonSet (or a ReplicaSet no
Deployment owns) with fewer ready replicas than it wants, or a Job that failed or runs no pod, whatever
the reason — typically pods that could not even be created (`FailedCreate`). It shows the replica
counts, the conditions that are not healthy, the last warning events of the workload and its
ReplicaSets, and its pods' states. Any other finding that names the workload or one of its pods
replaces it (`bot.correlate`). No automatic plan.

Not findings: scaled to zero; a Deployment rollout still within its `progressDeadlineSeconds`; the
missing replicas are pods still starting (within the start-up grace); every pod of the workload is
Ready even though the status has not caught up; a suspended or completed Job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from bot.evidence import Evidence, Job, Pod, Workload
from bot.model import Finding, ObjectRef, Severity
from handlers.base import Settings, clip, refs
from handlers.pod_not_healthy import assess, event_line, job_superseded, warning_events

CODE = "workload-not-healthy"
ALERTS = (
    "KubeDeploymentReplicasMismatch",
    "KubeStatefulSetReplicasMismatch",
    "KubeDaemonSetRolloutStuck",
    "KubeDaemonSetNotScheduled",
    "KubeJobFailed",
    "KubeJobNotCompleted",
)

# Progressing reasons of a Deployment whose rollout is under way (deployment controller's words).
ROLLING_REASONS = frozenset({"ReplicaSetUpdated", "NewReplicaSetCreated", "FoundNewReplicaSet"})
DEFAULT_PROGRESS_DEADLINE = 600


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    pods_of: dict[ObjectRef, list[Pod]] = {}
    for pod in evidence.pods:
        owner = evidence.owning_workload(pod)
        if owner is not None:
            pods_of.setdefault(owner.ref, []).append(pod)
        controller = pod.meta.controller
        if controller is not None and controller.kind == "Job":
            pods_of.setdefault(ObjectRef("Job", controller.name, pod.namespace), []).append(pod)
    findings: list[Finding] = []
    for workload in evidence.workloads:
        finding = _workload(evidence, workload, pods_of.get(workload.ref, []), settings)
        if finding is not None:
            findings.append(finding)
    for job in evidence.jobs:
        finding = _job(evidence, job, pods_of.get(job.ref, []), settings)
        if finding is not None:
            findings.append(finding)
    return findings


def _workload(evidence: Evidence, w: Workload, pods: Sequence[Pod], settings: Settings) -> Finding | None:
    if w.kind == "ReplicaSet" and w.meta.controller is not None:
        return None  # its Deployment (or operator) speaks for it
    desired = w.replicas
    if not desired or w.meta.deleting:
        return None
    ready = min(w.ready_replicas, w.available_replicas) if w.kind == "Deployment" else w.ready_replicas
    if ready >= desired:
        return None
    live = [p for p in pods if not p.meta.deleting and p.phase not in ("Succeeded", "Failed")]
    problems = [p for p in live if assess(evidence, p, settings) is not None]
    ok = len(live) - len(problems)
    if not problems and ok >= desired:
        return None  # every pod is fine: the status has not caught up yet
    if not problems and _rolling_within_deadline(evidence, w):
        return None
    if not problems and len(live) >= desired:
        return None  # the missing ones are pods still starting
    lines = [_counts(w, desired)]
    lines += _conditions(w)
    lines += _events(evidence, [w.ref, *_replicasets(evidence, w)])
    namespace = w.meta.namespace or ""
    unlisted = evidence.unlisted("pods", namespace)
    lines += _pod_lines(evidence, live, settings, unlisted=unlisted)
    missing = desired - len(live)
    if unlisted:
        why = "its pods could not be listed"
    elif missing > 0:
        why = f"{missing} of its pods do not exist"
    else:
        why = f"{len(problems) or desired - ready} not ready"
    return Finding(
        code=CODE,
        severity=Severity.WARNING,
        summary=f"{w.kind.lower()}/{w.meta.name} has {ready}/{desired} replicas ready ({why})",
        objects=refs(w.ref, *(p.ref for p in problems)),
        evidence=tuple(lines),
    )


def _job(evidence: Evidence, job: Job, pods: Sequence[Pod], settings: Settings) -> Finding | None:
    if job.complete or job.suspend or job.meta.deleting or job_superseded(evidence, job):
        return None  # done, paused, going, or a later run of its CronJob succeeded
    failed = job.failed_condition
    live = [p for p in pods if not p.meta.deleting and p.phase not in ("Succeeded", "Failed")]
    if failed is None:
        if live or job.active:
            return None  # running: its pods speak for themselves (pod-not-healthy)
        age = _age(evidence, job.start_time or job.meta.created_at)
        if age is not None and age <= settings.startup_grace_seconds:
            return None
        what = "runs no pod and has not completed"
    else:
        what = f"failed ({failed.reason or 'Failed'}" + (
            f": {clip(failed.message, 200)})" if failed.message else ")"
        )
    lines = [f"{job.ref}: active {job.active}, succeeded {job.succeeded}, failed {job.failed}"]
    if failed is not None:
        lines.append(f"condition Failed=True ({failed.reason}: {clip(failed.message, 300)})")
    lines += _events(evidence, [job.ref])
    lines += _pod_lines(
        evidence, pods, settings, unlisted=evidence.unlisted("pods", job.meta.namespace or "")
    )
    return Finding(
        code=CODE,
        severity=Severity.WARNING,
        summary=f"job/{job.meta.name} {what}",
        objects=refs(job.ref, *(p.ref for p in pods if p.phase == "Failed")),
        evidence=tuple(lines),
    )


def _age(evidence: Evidence, when: datetime | None) -> float | None:
    if when is None or evidence.observed_at is None:
        return None
    return (evidence.observed_at - when).total_seconds()


def _time(value: object) -> datetime | None:
    """An RFC 3339 time from a raw field (`2026-03-14T10:30:00Z`); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _rolling_within_deadline(evidence: Evidence, w: Workload) -> bool:
    """A Deployment whose rollout the controller reports as progressing, last updated within its
    progress deadline (after it the controller says ProgressDeadlineExceeded itself)."""
    if w.kind != "Deployment":
        return False
    cond = w.condition("Progressing")
    if cond is None or cond.status != "True" or cond.reason not in ROLLING_REASONS:
        return False
    deadline = DEFAULT_PROGRESS_DEADLINE
    spec = w.raw.get("spec")
    if spec is not None and isinstance(spec.get("progressDeadlineSeconds"), int):
        deadline = spec["progressDeadlineSeconds"]
    # lastUpdateTime moves with every step of the rollout; lastTransitionTime only when it started.
    updated = cond.last_transition
    status = w.raw.get("status")
    for raw in (status.get("conditions") or ()) if status is not None else ():
        if raw.get("type") == "Progressing":
            updated = _time(raw.get("lastUpdateTime")) or updated
    age = _age(evidence, updated)
    return age is None or age <= deadline


def _counts(w: Workload, desired: int) -> str:
    parts = [f"desired {desired}", f"ready {w.ready_replicas}"]
    if w.kind == "Deployment":
        parts.append(f"available {w.available_replicas}")
    if w.updated_replicas is not None:
        parts.append(f"updated {w.updated_replicas}")
    return f"{w.ref}: " + ", ".join(parts)


def _conditions(w: Workload) -> list[str]:
    out: list[str] = []
    for cond in w.conditions:
        healthy = cond.status == "True" and cond.type in ("Available", "Progressing")
        if healthy or (cond.type not in ("Available", "Progressing") and cond.status != "True"):
            continue
        detail = ": ".join(x for x in (cond.reason, clip(cond.message, 300)) if x)
        out.append(f"condition {cond.type}={cond.status}" + (f" ({detail})" if detail else ""))
    return out


def _replicasets(evidence: Evidence, w: Workload) -> list[ObjectRef]:
    if w.kind != "Deployment":
        return []
    return [
        rs.ref
        for rs in evidence.workloads
        if rs.kind == "ReplicaSet"
        and rs.meta.namespace == w.meta.namespace
        and rs.meta.controller is not None
        and rs.meta.controller.kind == "Deployment"
        and rs.meta.controller.name == w.meta.name
    ]


def _events(evidence: Evidence, targets: Iterable[ObjectRef]) -> list[str]:
    return [event_line(ref, e) for ref in targets for e in warning_events(evidence, ref)]


def _pod_lines(
    evidence: Evidence, pods: Sequence[Pod], settings: Settings, *, unlisted: bool, limit: int = 5
) -> list[str]:
    if unlisted:
        return ["its pods could not be listed (see what could not be read)"]
    lines: list[str] = []
    for pod in pods[:limit]:
        problem = assess(evidence, pod, settings)
        lines.append(f"pod {pod.name}: {problem or pod.phase or 'no status'}")
    if len(pods) > limit:
        lines.append(f"… and {len(pods) - limit} more pods")
    if not pods:
        lines.append("none of its pods exist")
    return lines
