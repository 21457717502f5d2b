"""`rollout-stuck`: a Deployment's rollout does not finish. Either the deployment controller gave up
(condition Progressing=False, reason ProgressDeadlineExceeded: `ReplicaSet "x" has timed out
progressing.`), or a rolling update is under way (old pods still serve) while the new ReplicaSet's
pods fail (crash, image pull, config error, unschedulable) or it cannot create them (ReplicaFailure).

The finding lists the new ReplicaSet and its pods, so it is `caused_by` the findings on those pods
(bot.diagnose links them). A rollout still within its deadline whose new pods are only starting is
not a finding; neither is a paused Deployment. No automatic plan (`kubectl rollout undo` is a choice
for a person)."""

from __future__ import annotations

from bot.evidence import Evidence, Pod, Workload
from bot.model import Finding, Severity
from handlers.base import Settings, clip, describe_status, refs

CODE = "rollout-stuck"
ALERTS = ("KubeDeploymentRolloutStuck", "KubeDeploymentReplicasMismatch", "KubeDeploymentGenerationMismatch")

REVISION = "deployment.kubernetes.io/revision"

# Container waiting reasons that mean the new pods will not become ready by themselves.
_BAD_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "ErrImageNeverPull",
    }
)


def _revision(w: Workload) -> int:
    text = w.meta.annotations.get(REVISION, "")
    return int(text) if text.isdigit() else -1


def _replica_sets(evidence: Evidence, deployment: Workload) -> list[Workload]:
    return [
        w
        for w in evidence.workloads
        if w.kind == "ReplicaSet"
        and w.meta.namespace == deployment.meta.namespace
        and (c := w.meta.controller) is not None
        and c.kind == "Deployment"
        and c.name == deployment.meta.name
    ]


def _new_replica_set(deployment: Workload, sets: list[Workload]) -> Workload | None:
    if not sets:
        return None
    wanted = _revision(deployment)
    for rs in sets:
        if wanted >= 0 and _revision(rs) == wanted:
            return rs
    return max(sets, key=_revision)


def _pods_of(evidence: Evidence, rs: Workload) -> list[Pod]:
    return [
        p
        for p in evidence.pods_in(rs.meta.namespace or "")
        if (c := p.meta.controller) is not None
        and c.kind == "ReplicaSet"
        and c.name == rs.meta.name
        and not p.meta.deleting
    ]


def _pod_trouble(pod: Pod, settings: Settings) -> str:
    """Why a new pod will not become available by itself; "" when it may still be starting."""
    for status in pod.init_container_statuses + pod.container_statuses:
        state = status.state
        if state.state == "waiting" and state.reason in _BAD_WAITING:
            return state.reason
        if state.state == "terminated" and state.exit_code not in (0, None) and not status.init:
            return f"exited {state.exit_code}"
        if status.init and state.state == "terminated" and state.exit_code not in (0, None):
            return f"init container {status.name} exited {state.exit_code}"
        if status.restart_count >= settings.restart_threshold and not status.ready:
            return f"{status.restart_count} restarts"
    cond = pod.condition("PodScheduled")
    if (
        pod.phase == "Pending"
        and cond is not None
        and cond.status == "False"
        and cond.reason == "Unschedulable"
    ):
        return "Unschedulable"
    if pod.phase == "Failed":
        return pod.reason or "Failed"
    return ""


def diagnose(evidence: Evidence, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    for deployment in evidence.workloads:
        if deployment.kind != "Deployment" or deployment.meta.deleting:
            continue
        progressing = deployment.condition("Progressing")
        if progressing is not None and progressing.reason == "DeploymentPaused":
            continue
        stale = (
            deployment.generation is not None
            and deployment.observed_generation is not None
            and deployment.observed_generation < deployment.generation
        )
        deadline = (
            progressing is not None
            and progressing.status == "False"
            and progressing.reason == "ProgressDeadlineExceeded"
            and not stale
        )
        sets = _replica_sets(evidence, deployment)
        new = _new_replica_set(deployment, sets)
        new_pods = _pods_of(evidence, new) if new is not None else []
        troubled = [(p, why) for p in new_pods if (why := _pod_trouble(p, settings))]
        old_serving = [
            rs for rs in sets if rs is not new and (rs.ready_replicas > 0 or (rs.replicas or 0) > 0)
        ]
        failure = new.condition("ReplicaFailure") if new is not None else None
        cannot_create = failure is not None and failure.status == "True"
        mid_update = (
            bool(old_serving)
            and new is not None
            and (
                new.available_replicas < (new.replicas or 0)
                or (new.replicas or 0) < (deployment.replicas or 0)
            )
        )
        if not deadline and not (mid_update and (troubled or cannot_create)):
            continue
        want = deployment.replicas if deployment.replicas is not None else 1
        lines: list[str] = []
        if progressing is not None and (deadline or progressing.status != "True"):
            lines.append(
                f"condition Progressing={progressing.status} {progressing.reason}: "
                f"{clip(progressing.message)}"
            )
        available = deployment.condition("Available")
        if available is not None and available.status != "True":
            lines.append(
                f"condition Available={available.status} {available.reason}: {clip(available.message)}"
            )
        if new is not None:
            lines.append(
                f"new ReplicaSet {new.meta.name} (revision {_revision(new)}): "
                f"{new.available_replicas} available, {new.ready_replicas} ready "
                f"of {new.replicas if new.replicas is not None else '?'}"
            )
        for rs in old_serving:
            lines.append(
                f"old ReplicaSet {rs.meta.name} (revision {_revision(rs)}) still has "
                f"{rs.ready_replicas} ready of {rs.replicas if rs.replicas is not None else '?'}"
            )
        if cannot_create and failure is not None:
            lines.append(
                f"ReplicaSet {new.meta.name if new else '?'}: ReplicaFailure {failure.reason}: "
                f"{clip(failure.message)}"
            )
        for pod, why in troubled[:3]:
            first = next(
                (s for s in pod.init_container_statuses + pod.container_statuses if not s.ready),
                None,
            )
            lines.append(f"pod {pod.name}: {why}" + (f"; {describe_status(first)}" if first else ""))
        if new is not None:
            for event in evidence.events_for(new.ref)[-2:]:
                if event.type == "Warning":
                    lines.append(
                        f"event on {new.meta.name}: {event.reason} x{event.count}: {clip(event.message)}"
                    )
        name = deployment.meta.name
        if troubled:
            why_text = f"{len(troubled)}/{len(new_pods)} new pods failing ({troubled[0][1]})"
        elif cannot_create and failure is not None:
            why_text = f"the new ReplicaSet cannot create pods ({clip(failure.message, 160)})"
        else:
            why_text = clip(progressing.message, 160) if progressing is not None else "no progress"
        summary = (
            f"rollout of Deployment {name} is stuck"
            + (" (ProgressDeadlineExceeded)" if deadline else "")
            + f": {deployment.available_replicas}/{want} available; {why_text}"
        )
        findings.append(
            Finding(
                code=CODE,
                severity=Severity.WARNING,
                summary=summary,
                objects=refs(
                    deployment.ref, new.ref if new is not None else None, *(p.ref for p in new_pods)
                ),
                evidence=tuple(lines),
            )
        )
    return findings
