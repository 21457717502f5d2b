"""Pure rules: an `Evidence` snapshot, store rows (incidents, executions, Slack message locations),
validation results and the previous summary's `SummaryState` -> a typed `HealthSummary`. No I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from bot.evidence import Evidence, Pod, Workload
from bot.model import CheckResult, Incident, IncidentStatus, ObjectRef

if TYPE_CHECKING:
    from bot.store import Execution
from bot.summary.model import (
    _OBJECT_LABELS,
    DEFAULT_LOOKBACK_SECONDS,
    TOP_RESTARTS,
    HealthSummary,
    IncidentLine,
    IncidentLink,
    NamespaceHealth,
    PodRestarts,
    Problem,
    RemediationLine,
    SummaryState,
    WorkloadGap,
)


def restart_key(pod: Pod, container: str) -> str:
    return f"{pod.namespace}/{pod.name}/{container}"


def _counts_as_pod(pod: Pod) -> bool:
    # A completed Job pod is done, not unready.
    return pod.phase != "Succeeded"


def _pod_reason(pod: Pod) -> str:
    """Why a pod is not ready, as kubectl's STATUS column would say it."""
    if pod.meta.deleting:
        return "Terminating"
    if pod.reason:
        return pod.reason
    for status in pod.init_container_statuses + pod.container_statuses:
        if status.state.state == "waiting" and status.state.reason:
            return status.state.reason
        if status.state.state == "terminated" and status.state.reason:
            return status.state.reason
    if pod.phase == "Running":
        return "Running, not Ready"
    return pod.phase or "Unknown"


def _last_reason(pod: Pod) -> str:
    worst = max(pod.container_statuses, key=lambda s: s.restart_count, default=None)
    if worst is None or worst.last_state is None:
        return ""
    reason = worst.last_state.reason or worst.last_state.state
    if worst.last_state.exit_code is not None:
        reason += f" (exit {worst.last_state.exit_code})"
    return f"{worst.name}: {reason}"


def _restarts(
    pods: Sequence[Pod], previous: Mapping[str, int] | None
) -> tuple[list[PodRestarts], dict[str, int]]:
    """Restarts per pod since `previous` counts (None: since each pod started), and the counts now."""
    now_counts: dict[str, int] = {}
    out: list[PodRestarts] = []
    for pod in pods:
        delta = 0
        total = 0
        for status in pod.container_statuses + pod.init_container_statuses:
            key = restart_key(pod, status.name)
            now_counts[key] = status.restart_count
            total += status.restart_count
            before = previous.get(key) if previous is not None else None
            # A count lower than before means a new pod with the same name: all its restarts are new.
            delta += (
                status.restart_count
                if before is None or status.restart_count < before
                else (status.restart_count - before)
            )
        if delta > 0:
            out.append(PodRestarts(pod=pod.name, restarts=delta, total=total, last_reason=_last_reason(pod)))
    out.sort(key=lambda r: (-r.restarts, r.pod))
    return out, now_counts


def _top_level_workloads(evidence: Evidence, namespace: str) -> list[Workload]:
    # A ReplicaSet owned by a Deployment is reported through its Deployment.
    return [
        w
        for w in evidence.workloads
        if (w.meta.namespace or "") == namespace and not (w.kind == "ReplicaSet" and w.meta.controller)
    ]


def _pods_unreadable(errors: Iterable[str], namespace: str) -> str | None:
    # bot.cluster reports a failed list as "cannot list pods in <ns>: <reason>".
    prefix = f"cannot list pods in {namespace}:"
    return next((e for e in errors if e.startswith(prefix)), None)


def namespace_health(
    evidence: Evidence, namespace: str, previous_restarts: Mapping[str, int] | None
) -> tuple[NamespaceHealth, dict[str, int]]:
    """One namespace's health, and its restart counts now (for the next summary's state)."""
    unreadable = _pods_unreadable(evidence.errors, namespace)
    if unreadable is not None:
        problem = Problem(kind="pods-unreadable", namespace=namespace, detail=unreadable)
        return NamespaceHealth(namespace=namespace, readable=False, problems=(problem,)), {}
    pods = [p for p in evidence.pods_in(namespace) if _counts_as_pod(p)]
    ready = [p for p in pods if p.ready and not p.meta.deleting]
    ready_names = {p.name for p in ready}
    not_ready = sorted((p for p in pods if p.name not in ready_names), key=lambda p: p.name)
    restarted, counts = _restarts(pods, previous_restarts)

    problems: list[Problem] = []
    gaps: list[WorkloadGap] = []
    covered: set[str] = set()  # not-ready pods already explained by their workload's line
    for workload in sorted(_top_level_workloads(evidence, namespace), key=lambda w: (w.kind, w.meta.name)):
        desired = workload.replicas
        if desired is None or workload.ready_replicas >= desired:
            continue
        gaps.append(WorkloadGap(ref=workload.ref, desired=desired, ready=workload.ready_replicas))
        mine = [
            p for p in not_ready if (w := evidence.owning_workload(p)) is not None and w.ref == workload.ref
        ]
        covered.update(p.name for p in mine)
        why = ", ".join(f"{p.name}: {_pod_reason(p)}" for p in mine[:3])
        if len(mine) > 3:
            why += f", and {len(mine) - 3} more"
        detail = f"{workload.kind} {workload.meta.name}: {workload.ready_replicas}/{desired} ready"
        problems.append(
            Problem(
                kind="workload-replicas",
                namespace=namespace,
                detail=detail + (f" ({why})" if why else ""),
                object=workload.ref,
            )
        )
    for pod in not_ready:
        if pod.name not in covered:
            problems.append(
                Problem(
                    kind="pod-not-ready",
                    namespace=namespace,
                    detail=f"Pod {pod.name} not ready: {_pod_reason(pod)}",
                    object=pod.ref,
                )
            )

    no_endpoints: list[str] = []
    for service in sorted(evidence.services, key=lambda s: s.meta.name):
        if (
            (service.meta.namespace or "") != namespace
            or not service.selector
            or service.type == "ExternalName"
        ):
            continue  # selector-less Services have hand-managed endpoints
        endpoints = evidence.endpoints_for(namespace, service.meta.name)
        if endpoints is None or not endpoints.ready:
            no_endpoints.append(service.meta.name)
            waiting = f", {len(endpoints.not_ready)} not ready" if endpoints and endpoints.not_ready else ""
            problems.append(
                Problem(
                    kind="service-no-endpoints",
                    namespace=namespace,
                    detail=f"Service {service.meta.name} has no ready endpoints{waiting}",
                    object=service.ref,
                )
            )

    unbound: list[tuple[str, str]] = []
    for pvc in sorted(evidence.pvcs, key=lambda c: c.meta.name):
        if (pvc.meta.namespace or "") == namespace and pvc.phase != "Bound":
            phase = pvc.phase or "Unknown"
            unbound.append((pvc.meta.name, phase))
            problems.append(
                Problem(
                    kind="pvc-not-bound",
                    namespace=namespace,
                    detail=f"PersistentVolumeClaim {pvc.meta.name} is {phase}, not Bound",
                    object=pvc.ref,
                )
            )

    health = NamespaceHealth(
        namespace=namespace,
        readable=True,
        pods_ready=len(ready),
        pods_total=len(pods),
        not_ready_pods=tuple(p.name for p in not_ready),
        restarted=tuple(restarted[:TOP_RESTARTS]),
        restarted_omitted=max(0, len(restarted) - TOP_RESTARTS),
        workloads_not_ready=tuple(gaps),
        services_without_endpoints=tuple(no_endpoints),
        pvcs_not_bound=tuple(unbound),
        problems=tuple(problems),
    )
    return health, counts


def incident_in_scope(incident: Incident, namespaces: Collection[str]) -> bool:
    """Incidents without a namespace label are shown everywhere: better seen twice than never."""
    return incident.namespace is None or incident.namespace in namespaces


def _incident_names(incident: Incident) -> set[tuple[str, str]]:
    """(namespace, object name) pairs an incident is about: its findings' objects and alert labels."""
    names: set[tuple[str, str]] = set()
    for finding in incident.findings:
        for ref in finding.objects:
            names.add((ref.namespace or "", ref.name))
    for alert in incident.alerts:
        ns = alert.labels.get("namespace", incident.namespace or "")
        for label in _OBJECT_LABELS:
            if alert.labels.get(label):
                names.add((ns, alert.labels[label]))
    for label in _OBJECT_LABELS:
        value = incident.common_labels.get(label)
        if value:
            names.add((incident.namespace or "", value))
    return names


def _matching_incident(problem: Problem, incidents: Sequence[Incident]) -> Incident | None:
    """The incident (firing first, then the newest) that is about `problem`'s object or its pods."""
    if problem.object is None:
        return None
    ns, name = problem.object.namespace or "", problem.object.name
    ordered = sorted(incidents, key=lambda i: (i.status != IncidentStatus.FIRING, -i.updated_at))
    for incident in ordered:
        for inc_ns, inc_name in _incident_names(incident):
            if inc_ns != ns:
                continue
            # A workload's incident may name one of its pods (prometheus-0 for StatefulSet prometheus).
            if inc_name == name or (problem.kind == "workload-replicas" and inc_name.startswith(name + "-")):
                return incident
    return None


def _link(incident_id: int | None, messages: Mapping[int, tuple[str, str]]) -> IncidentLink | None:
    if incident_id is None or incident_id not in messages:
        return None
    channel, ts = messages[incident_id]
    return IncidentLink(incident_id=incident_id, channel=channel, ts=ts)


def _incident_line(incident: Incident, messages: Mapping[int, tuple[str, str]]) -> IncidentLine:
    return IncidentLine(
        id=incident.id,
        alertname=incident.alertname or "(no alertname)",
        severity=incident.severity,
        namespace=incident.namespace,
        status=incident.status.value,
        work_state=incident.work_state.value,
        created_at=incident.created_at,
        updated_at=incident.updated_at,
        link=_link(incident.id, messages),
        resolved_at=incident.resolved_at,
    )


def summarize(
    *,
    title: str,
    namespaces: Sequence[str],
    generated_at: float,
    evidence: Evidence | None,
    collection_error: str | None = None,
    source: str = "cluster",
    checks: Sequence[CheckResult] = (),
    checks_note: str | None = None,
    incidents: Sequence[Incident] = (),
    executions: Sequence[Execution] = (),
    slack_messages: Mapping[int, tuple[str, str]] | None = None,
    previous: SummaryState | None = None,
    store_note: str | None = None,
    timezone: str = "UTC",
) -> HealthSummary:
    """Pure: everything the summary shows, decided here. `evidence` None (or `collection_error`) means
    the cluster could not be read; the store-side sections are still filled in."""
    messages = slack_messages or {}
    since = previous.at if previous is not None else generated_at - DEFAULT_LOOKBACK_SECONDS
    scope = tuple(dict.fromkeys(namespaces))
    in_scope = [i for i in {i.id: i for i in incidents}.values() if incident_in_scope(i, scope)]

    health: list[NamespaceHealth] = []
    counts: dict[str, int] = {}
    read_errors: tuple[str, ...] = ()
    if evidence is not None and collection_error is None:
        read_errors = tuple(evidence.errors)
        previous_counts = previous.restarts if previous is not None else None
        for namespace in scope:
            ns_health, ns_counts = namespace_health(evidence, namespace, previous_counts)
            # Link each problem to the incident thread about it, when there is one.
            linked = []
            for problem in ns_health.problems:
                incident = _matching_incident(problem, in_scope)
                if incident is not None:
                    problem = dataclasses.replace(
                        problem, incident_id=incident.id, link=_link(incident.id, messages)
                    )
                linked.append(problem)
            health.append(dataclasses.replace(ns_health, problems=tuple(linked)))
            if ns_health.readable:
                counts.update(ns_counts)
            elif previous is not None:
                # Keep the old baseline of a namespace we could not read this time.
                prefix = namespace + "/"
                counts.update({k: v for k, v in previous.restarts.items() if k.startswith(prefix)})
    else:
        if collection_error is None:
            collection_error = "no evidence was collected"
        if previous is not None:
            counts = dict(previous.restarts)  # nothing new known: keep the baseline

    by_newest = sorted(in_scope, key=lambda i: -i.created_at)
    opened = tuple(_incident_line(i, messages) for i in by_newest if i.created_at >= since)
    # By resolution time, not updated_at: a rollback or re-diagnosis of an old incident touches it
    # later without resolving it again.
    resolved = tuple(
        _incident_line(i, messages)
        for i in by_newest
        if i.status == IncidentStatus.RESOLVED and i.resolved_at is not None and i.resolved_at >= since
    )
    still_open = tuple(_incident_line(i, messages) for i in by_newest if i.status == IncidentStatus.FIRING)

    # An execution about an incident of other namespaces is not this summary's business.
    elsewhere = {i.id for i in incidents if not incident_in_scope(i, scope)}
    remediations = tuple(
        RemediationLine(
            execution_id=e.id,
            incident_id=e.incident_id,
            actor=e.actor,
            targets=tuple(e.targets),
            status=e.status,
            detail=e.detail,
            started_at=e.started_at,
            finished_at=e.finished_at,
            link=_link(e.incident_id, messages),
        )
        for e in sorted(executions, key=lambda e: -e.started_at)
        if (e.started_at >= since or (e.finished_at or 0) >= since or e.status == "running")
        and e.incident_id not in elsewhere
        and _targets_in_scope(e.targets, scope)
    )

    return HealthSummary(
        title=title,
        namespaces=scope,
        generated_at=generated_at,
        since=since,
        has_baseline=previous is not None,
        source=source,
        collection_error=collection_error,
        read_errors=read_errors,
        namespace_health=tuple(health),
        checks=tuple(checks),
        checks_note=checks_note,
        incidents_opened=opened,
        incidents_resolved=resolved,
        incidents_open=still_open,
        remediations=remediations,
        store_note=store_note,
        state=SummaryState(at=generated_at, restarts=counts),
        timezone=timezone,
    )


def _targets_in_scope(targets: Sequence[str], namespaces: Sequence[str]) -> bool:
    """An execution belongs to the summary if any target is in its namespaces (or names no namespace)."""
    if not targets:
        return True
    for target in targets:
        try:
            ref = ObjectRef.parse(target)
        except ValueError:
            return True  # a host target ("host:/path"): cannot tell, show it
        if ref.namespace is None or ref.namespace in namespaces:
            return True
    return False
