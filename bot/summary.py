"""Health summaries of the monitoring namespaces: what a person wants to see once a day (or hour).

Two halves:
- pure: `summarize(...)` turns an `Evidence` snapshot, store rows (incidents, executions, Slack message
  locations), validation results and the previous summary's `SummaryState` into a typed
  `HealthSummary`; `render_text` / `summary_to_json` write it out. No I/O, table-driven tests.
- gathering: `build_summary(deps, ...)` reads those inputs through their adapters (cluster or bundle,
  store, validate) and never raises for an unreachable cluster or store: what failed becomes part of
  the summary. `pitcrew summary` is bot/cli/summary.py.

The Slack rendering is `bot/slack/summary_blocks.py`; scheduling and posting are `bot/schedule.py`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import time
import zoneinfo
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from bot.evidence import Evidence, Pod, Scope, Workload
from bot.model import CheckResult, Incident, IncidentStatus, JsonValue, ObjectRef
from bot.redact import redact

if TYPE_CHECKING:
    from bot.cluster import Cluster
    from bot.config import Config, ScheduleConfig
    from bot.store import Execution, StoreBackend

# How many restarted pods a namespace lists before "and N more".
TOP_RESTARTS = 5
# Without a previous summary, incidents and remediations of this window are shown.
DEFAULT_LOOKBACK_SECONDS = 24 * 3600.0
# Upper bound on one evidence collection, so a hung API server cannot stall a scheduled post forever.
COLLECT_TIMEOUT_SECONDS = 120.0
# Rows read from the store per query (newest first); summaries are about the recent past.
STORE_QUERY_LIMIT = 200

# Alert labels that name the object an incident is about (as kube-state-metrics labels them).
_OBJECT_LABELS = (
    "pod",
    "statefulset",
    "deployment",
    "daemonset",
    "replicaset",
    "service",
    "persistentvolumeclaim",
)

# Validation checks whose failures the namespace sections already report object by object.
# "evidence" (validation could not read everything) repeats the summary's own read errors.
COVERED_CHECKS = frozenset({"pods-ready", "endpoints", "pvcs-bound", "evidence"})

ProblemKind = Literal[
    "collection-failed",
    "pods-unreadable",
    "pod-not-ready",
    "workload-replicas",
    "service-no-endpoints",
    "pvc-not-bound",
    "check-failed",
]


# ---------------------------------------------------------------------------------------------
# The summary value
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentLink:
    """Where an incident's Slack thread is. `permalink` works in any workspace the reader is in."""

    incident_id: int
    channel: str
    ts: str

    @property
    def permalink(self) -> str:
        return f"https://slack.com/archives/{self.channel}/p{self.ts.replace('.', '')}"


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    namespace: str | None
    detail: str  # one line, e.g. "StatefulSet prometheus: 0/1 ready (prometheus-0: CrashLoopBackOff)"
    object: ObjectRef | None = None
    incident_id: int | None = None
    link: IncidentLink | None = None


@dataclass(frozen=True)
class PodRestarts:
    pod: str
    restarts: int  # since the previous summary (or since the pod started, without one)
    total: int  # the containers' restartCount now
    last_reason: str = ""  # last termination of the most-restarted container, e.g. "Error (exit 1)"


@dataclass(frozen=True)
class WorkloadGap:
    ref: ObjectRef
    desired: int
    ready: int


@dataclass(frozen=True)
class NamespaceHealth:
    namespace: str
    readable: bool  # False when its pods could not be listed (the counts below are then unknown)
    pods_ready: int = 0
    pods_total: int = 0
    not_ready_pods: tuple[str, ...] = ()
    restarted: tuple[PodRestarts, ...] = ()  # top offenders, most restarts first
    restarted_omitted: int = 0  # restarted pods not listed in `restarted`
    workloads_not_ready: tuple[WorkloadGap, ...] = ()
    services_without_endpoints: tuple[str, ...] = ()
    pvcs_not_bound: tuple[tuple[str, str], ...] = ()  # (name, phase)
    problems: tuple[Problem, ...] = ()

    @property
    def healthy(self) -> bool:
        return self.readable and not self.problems


@dataclass(frozen=True)
class IncidentLine:
    id: int
    alertname: str
    severity: str
    namespace: str | None
    status: str
    work_state: str
    created_at: float
    updated_at: float
    link: IncidentLink | None = None
    resolved_at: float | None = None


@dataclass(frozen=True)
class RemediationLine:
    execution_id: int
    incident_id: int | None
    actor: str
    targets: tuple[str, ...]
    status: str  # running | succeeded | failed | rolled-back
    detail: str
    started_at: float
    finished_at: float | None
    link: IncidentLink | None = None


@dataclass(frozen=True)
class SummaryState:
    """What the next summary compares against: when this one was taken, and restart counts per
    `namespace/pod/container`. Kept in the store's kv per schedule."""

    at: float
    restarts: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"at": self.at, "restarts": dict(sorted(self.restarts.items()))})

    @classmethod
    def from_json(cls, text: str) -> SummaryState:
        """Raises ValueError on anything but the shape `to_json` writes."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("at"), int | float):
            raise ValueError("summary state: expected an object with a numeric 'at'")
        restarts = data.get("restarts", {})
        if not isinstance(restarts, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in restarts.items()
        ):
            raise ValueError("summary state: 'restarts' must map strings to integers")
        return cls(at=float(data["at"]), restarts=dict(restarts))


@dataclass(frozen=True)
class HealthSummary:
    title: str  # schedule name, or "on demand"
    namespaces: tuple[str, ...]
    generated_at: float
    since: float  # start of the reporting window (the previous summary, or a default lookback)
    has_baseline: bool  # False: no previous summary; restarts are counted since each pod started
    source: str  # "cluster" or "snapshot <dir>"
    collection_error: str | None  # the cluster (or bundle) could not be read at all
    read_errors: tuple[str, ...]  # parts that could not be read
    namespace_health: tuple[NamespaceHealth, ...]
    checks: tuple[CheckResult, ...]
    checks_note: str | None  # why validation checks are missing or incomplete
    incidents_opened: tuple[IncidentLine, ...]
    incidents_resolved: tuple[IncidentLine, ...]
    incidents_open: tuple[IncidentLine, ...]
    remediations: tuple[RemediationLine, ...]
    store_note: str | None  # the store could not be read (incidents/remediations unknown)
    state: SummaryState  # to save once this summary is delivered
    timezone: str = "UTC"  # how times are shown (the schedule's time zone)

    def when(self, ts: float) -> str:
        return when(ts, self.timezone)

    @property
    def check_problems(self) -> tuple[Problem, ...]:
        """Failed checks, except those that repeat a problem the namespace sections already list."""
        covered = COVERED_CHECKS if self.collection_error is None else frozenset()
        return tuple(
            Problem(
                kind="check-failed",
                namespace=next((o.namespace for o in c.objects if o.namespace), None),
                detail=f"check {c.name} failed: {c.detail}",
                object=c.objects[0] if c.objects else None,
            )
            for c in self.checks
            if c.status == "fail" and c.name not in covered
        )

    @property
    def problems(self) -> tuple[Problem, ...]:
        out: list[Problem] = []
        if self.collection_error is not None:
            out.append(Problem(kind="collection-failed", namespace=None, detail=self.collection_error))
        for ns in self.namespace_health:
            out.extend(ns.problems)
        out.extend(self.check_problems)
        return tuple(out)

    @property
    def complete(self) -> bool:
        return self.collection_error is None and not self.read_errors

    @property
    def glance(self) -> str:
        """The one line a person reads first: "monitoring: all healthy" / "monitoring: 2 problems"."""
        label = scope_label(self.namespaces)
        if self.collection_error is not None:
            return (
                f"{label}: unknown, the cluster could not be read ({_first_line(self.collection_error, 120)})"
            )
        count = len(self.problems)
        text = (
            f"{label}: all healthy" if count == 0 else f"{label}: {count} problem{'s' if count != 1 else ''}"
        )
        if self.read_errors:
            text += f" (incomplete: {_plural(len(self.read_errors), 'read error')})"
        return text


def scope_label(namespaces: Sequence[str]) -> str:
    if not namespaces:
        return "no namespaces"
    if len(namespaces) <= 3:
        return ", ".join(namespaces)
    return f"{len(namespaces)} namespaces"


def _first_line(text: str, limit: int) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Pure rules: evidence + store rows -> HealthSummary
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Pure rendering: text (terminal, logs) and JSON
# ---------------------------------------------------------------------------------------------


def when(ts: float, timezone: str = "UTC") -> str:
    """A time as people in `timezone` read it (an unknown zone falls back to UTC)."""
    try:
        tz: datetime.tzinfo = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = datetime.UTC
    return datetime.datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M %Z")


def _link_text(link: IncidentLink | None, incident_id: int | None) -> str:
    if incident_id is None:
        return ""
    if link is None:
        return f" [incident #{incident_id}]"
    return f" [incident #{incident_id}: {link.permalink}]"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def render_text(summary: HealthSummary) -> str:
    """Plain text for the terminal: the glance line first, then the detail."""
    lines = [summary.glance]
    window = f"since {summary.when(summary.since)}" + (
        "" if summary.has_baseline else " (no previous summary)"
    )
    lines.append(f"Health summary '{summary.title}' at {summary.when(summary.generated_at)}, {window}")
    lines.append(f"Source: {summary.source}")
    if summary.collection_error is not None:
        lines.append(f"Could not read the cluster: {summary.collection_error}")
    for error in summary.read_errors:
        lines.append(f"Could not read: {error}")
    for ns in summary.namespace_health:
        lines.append("")
        if not ns.readable:
            lines.append(f"== {ns.namespace}: pods could not be read")
            continue
        state = "healthy" if ns.healthy else _plural(len(ns.problems), "problem")
        lines.append(f"== {ns.namespace}: {state}; pods {ns.pods_ready}/{ns.pods_total} ready")
        for problem in ns.problems:
            lines.append(f"  ! {problem.detail}{_link_text(problem.link, problem.incident_id)}")
        if ns.restarted:
            restart_window = "since the last summary" if summary.has_baseline else "since the pods started"
            lines.append(f"  restarts {restart_window}:")
            for r in ns.restarted:
                reason = f", last: {r.last_reason}" if r.last_reason else ""
                lines.append(f"    {r.pod}: +{r.restarts} (total {r.total}{reason})")
            if ns.restarted_omitted:
                lines.append(f"    and {ns.restarted_omitted} more pods restarted")
    lines.append("")
    failed = sum(1 for c in summary.checks if c.status == "fail")
    warned = sum(1 for c in summary.checks if c.status == "warn")
    passed = sum(1 for c in summary.checks if c.status == "pass")
    lines.append(f"Validation checks: {passed} pass, {warned} warn, {failed} fail")
    if summary.checks_note:
        lines.append(f"  ({summary.checks_note})")
    for check in summary.checks:
        if check.status != "pass":
            lines.append(f"  {check.status.upper()} {check.name}: {check.detail}")
    lines.append("")
    if summary.store_note:
        lines.append(f"Incidents and remediations unknown: {summary.store_note}")
    else:
        lines.append(
            f"Incidents: {len(summary.incidents_opened)} opened, {len(summary.incidents_resolved)} resolved, "
            f"{len(summary.incidents_open)} still open"
        )
        shown: set[int] = set()
        for label, group in (
            ("open", summary.incidents_open),
            ("opened", summary.incidents_opened),
            ("resolved", summary.incidents_resolved),
        ):
            for inc in group:
                if inc.id in shown:
                    continue
                shown.add(inc.id)
                where = f", {inc.namespace}" if inc.namespace else ""
                lines.append(
                    f"  #{inc.id} {inc.alertname} ({inc.severity or 'no severity'}{where}): {inc.status}, "
                    f"{inc.work_state}{_link_text(inc.link, inc.id) if inc.link else ''} [{label}]"
                )
        lines.append(f"Remediations: {len(summary.remediations)}")
        for rem in summary.remediations:
            about = f" for incident #{rem.incident_id}" if rem.incident_id is not None else ""
            lines.append(
                f"  execution {rem.execution_id}{about} by {rem.actor}: {rem.status}"
                + (f" ({_first_line(rem.detail, 160)})" if rem.detail else "")
            )
    # Evidence is redacted when collected; this is the last line of defence for check details too.
    return "\n".join(redact(line) for line in lines).rstrip() + "\n"


def _link_json(link: IncidentLink | None) -> JsonValue:
    if link is None:
        return None
    return {
        "incident_id": link.incident_id,
        "channel": link.channel,
        "ts": link.ts,
        "permalink": link.permalink,
    }


def _problem_json(p: Problem) -> dict[str, JsonValue]:
    return {
        "kind": p.kind,
        "namespace": p.namespace,
        "object": str(p.object) if p.object else None,
        "detail": p.detail,
        "incident_id": p.incident_id,
        "link": _link_json(p.link),
    }


def _incident_json(i: IncidentLine) -> dict[str, JsonValue]:
    return {
        "id": i.id,
        "alertname": i.alertname,
        "severity": i.severity,
        "namespace": i.namespace,
        "status": i.status,
        "work_state": i.work_state,
        "created_at": i.created_at,
        "updated_at": i.updated_at,
        "resolved_at": i.resolved_at,
        "link": _link_json(i.link),
    }


def summary_to_json(summary: HealthSummary) -> dict[str, JsonValue]:
    """Plain data (for `-o json` and API consumers); stable keys, no internal state."""
    return {
        "glance": summary.glance,
        "title": summary.title,
        "namespaces": list(summary.namespaces),
        "generated_at": summary.generated_at,
        "since": summary.since,
        "has_baseline": summary.has_baseline,
        "source": summary.source,
        "healthy": not summary.problems and summary.complete,
        "problem_count": len(summary.problems),
        "collection_error": summary.collection_error,
        "read_errors": list(summary.read_errors),
        "problems": [_problem_json(p) for p in summary.problems],
        "namespace_health": [
            {
                "namespace": ns.namespace,
                "readable": ns.readable,
                "pods_ready": ns.pods_ready,
                "pods_total": ns.pods_total,
                "not_ready_pods": list(ns.not_ready_pods),
                "restarted": [
                    {"pod": r.pod, "restarts": r.restarts, "total": r.total, "last_reason": r.last_reason}
                    for r in ns.restarted
                ],
                "restarted_omitted": ns.restarted_omitted,
                "workloads_not_ready": [
                    {"object": str(g.ref), "desired": g.desired, "ready": g.ready}
                    for g in ns.workloads_not_ready
                ],
                "services_without_endpoints": list(ns.services_without_endpoints),
                "pvcs_not_bound": [{"name": n, "phase": p} for n, p in ns.pvcs_not_bound],
                "problems": [_problem_json(p) for p in ns.problems],
            }
            for ns in summary.namespace_health
        ],
        "checks": [
            {"name": c.name, "status": c.status, "detail": c.detail, "objects": [str(o) for o in c.objects]}
            for c in summary.checks
        ],
        "checks_note": summary.checks_note,
        "incidents": {
            "opened": [_incident_json(i) for i in summary.incidents_opened],
            "resolved": [_incident_json(i) for i in summary.incidents_resolved],
            "still_open": [_incident_json(i) for i in summary.incidents_open],
        },
        "remediations": [
            {
                "execution_id": r.execution_id,
                "incident_id": r.incident_id,
                "actor": r.actor,
                "targets": list(r.targets),
                "status": r.status,
                "detail": r.detail,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "link": _link_json(r.link),
            }
            for r in summary.remediations
        ],
        "store_note": summary.store_note,
    }


# ---------------------------------------------------------------------------------------------
# Gathering (I/O through the adapters)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SummaryDeps:
    """What building a summary reads. `cluster` None with `snapshot_dir` None means: connect with
    `config.cluster` for this summary and close afterwards. `store` None: no incidents section."""

    config: Config
    store: StoreBackend | None = None
    cluster: Cluster | None = None
    snapshot_dir: str | None = None
    # Called after a summary is queued in the outbox (the Slack service's "send now" nudge).
    on_enqueued: Callable[[], None] | None = None


def state_key(schedule_name: str) -> str:
    return f"summary:{schedule_name}:state"


def baseline_schedule(config: Config, namespaces: Sequence[str]) -> ScheduleConfig | None:
    """The schedule an on-demand summary compares with: the first covering all its namespaces."""
    for schedule in config.schedules:
        if set(namespaces) <= set(schedule.namespaces):
            return schedule
    return None


async def load_state(store: StoreBackend | None, schedule_name: str | None) -> SummaryState | None:
    """The previous summary's state; a missing or unreadable record means no baseline."""
    if store is None or schedule_name is None:
        return None
    text = await store.get_kv(state_key(schedule_name))
    if text is None:
        return None
    try:
        return SummaryState.from_json(text)
    except ValueError:
        return None


async def _collect(
    deps: SummaryDeps, namespaces: Sequence[str]
) -> tuple[Evidence | None, str | None, Cluster | None, str]:
    """Evidence, or why there is none; the cluster to validate with; the source label."""
    if deps.snapshot_dir is not None:
        from bot.snapshot import BundleError, read_bundle

        source = f"snapshot {deps.snapshot_dir}"
        try:
            evidence = await asyncio.to_thread(read_bundle, deps.snapshot_dir, namespaces=namespaces)
        except (BundleError, OSError) as exc:
            return None, f"cannot read bundle {deps.snapshot_dir}: {exc}", None, source
        if not (evidence.pods or evidence.events or evidence.services or evidence.workloads or evidence.pvcs):
            # A mistyped -n (or a bundle of other namespaces) would otherwise read as "all healthy".
            wanted = ", ".join(namespaces)
            return (
                None,
                f"the bundle {deps.snapshot_dir} holds no objects in namespace {wanted}",
                None,
                source,
            )
        return evidence, None, None, source
    if deps.cluster is None:
        return None, "no cluster connection", None, "cluster"
    from bot.cluster import ClusterError

    try:
        evidence = await asyncio.wait_for(
            deps.cluster.collect(Scope(namespaces=tuple(namespaces))), COLLECT_TIMEOUT_SECONDS
        )
    except TimeoutError:
        return None, f"collection timed out after {COLLECT_TIMEOUT_SECONDS:.0f} s", None, "cluster"
    except ClusterError as exc:  # nothing could be read ("cannot reach the Kubernetes API at ...")
        return None, str(exc), None, "cluster"
    except Exception as exc:  # the adapter reports failures in evidence.errors; anything else lands here
        return None, f"{type(exc).__name__}: {exc}", None, "cluster"
    # Every list call failed: nothing at all was read, so the cluster is unreachable (or forbidden).
    nothing_read = not (
        evidence.pods or evidence.services or evidence.workloads or evidence.nodes or evidence.pvcs
    )
    if nothing_read and evidence.errors:
        return None, f"cluster unreachable: {evidence.errors[0]}", None, "cluster"
    return evidence, None, deps.cluster, "cluster"


class _CollectedCluster:
    """The cluster as validation sees it, answering `collect` with the evidence this summary already
    read (one collection per summary, not two); everything else goes to the real adapter."""

    def __init__(self, cluster: Cluster, evidence: Evidence) -> None:
        self._cluster = cluster
        self._evidence = evidence

    async def collect(self, scope: Scope) -> Evidence:
        if set(scope.namespaces) <= set(self._evidence.namespaces):
            return self._evidence
        return await self._cluster.collect(scope)

    async def read_log_since(
        self, namespace: str, pod: str, container: str, *, since_seconds: int
    ) -> tuple[str, ...]:
        return await self._cluster.read_log_since(namespace, pod, container, since_seconds=since_seconds)

    async def service_proxy_get(
        self,
        namespace: str,
        service: str,
        port: int | str,
        path: str,
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, str]:
        return await self._cluster.service_proxy_get(namespace, service, port, path, params)


async def _checks(
    deps: SummaryDeps,
    cluster: Cluster | None,
    evidence: Evidence | None,
    namespaces: Sequence[str],
    reason: str,
) -> tuple[tuple[CheckResult, ...], str | None]:
    if cluster is None or evidence is None:
        return (), reason
    from bot.validate import validate

    try:
        # since=None: a summary is not checking a fix, so restarts and log errors only warn.
        results = await validate(
            list(namespaces), cluster=_CollectedCluster(cluster, evidence), config=deps.config, since=None
        )
    except Exception as exc:
        return (), f"validation could not run: {type(exc).__name__}: {exc}"
    return tuple(results), None


async def _store_rows(
    store: StoreBackend | None, since: float
) -> tuple[list[Incident], list[Execution], dict[int, tuple[str, str]], str | None]:
    if store is None:
        return [], [], {}, "no store configured"
    try:
        recent = await store.list_incidents(since=since, limit=STORE_QUERY_LIMIT)
        firing = await store.list_incidents(status=IncidentStatus.FIRING, limit=STORE_QUERY_LIMIT)
        executions = await store.list_executions(limit=STORE_QUERY_LIMIT)
        incidents = list({i.id: i for i in (*firing, *recent)}.values())
        wanted = {i.id for i in incidents} | {e.incident_id for e in executions if e.incident_id is not None}
        messages: dict[int, tuple[str, str]] = {}
        for incident_id in sorted(wanted):
            location = await store.get_slack_message(incident_id)
            if location is not None:
                messages[incident_id] = location
    except Exception as exc:
        return [], [], {}, f"store unreadable: {type(exc).__name__}: {exc}"
    return incidents, executions, messages, None


async def build_summary(
    deps: SummaryDeps,
    *,
    namespaces: Sequence[str] | None = None,
    schedule: ScheduleConfig | None = None,
    now: float | None = None,
) -> HealthSummary:
    """Gather and summarize. With `schedule`: its namespaces and its previous state; without: the given
    namespaces (default `config.cluster.namespaces`) compared with the first schedule covering them.
    Never raises for an unreachable cluster, bundle or store: the summary says what failed."""
    generated_at = time.time() if now is None else now
    scope = tuple(namespaces or (schedule.namespaces if schedule else deps.config.cluster.namespaces))
    baseline = schedule or baseline_schedule(deps.config, scope)
    title = schedule.name if schedule is not None else "on demand"
    try:
        previous = await load_state(deps.store, baseline.name if baseline else None)
    except Exception:
        previous = None
    since = previous.at if previous is not None else generated_at - DEFAULT_LOOKBACK_SECONDS

    own_cluster: Cluster | None = None
    connect_error: str | None = None
    if deps.cluster is None and deps.snapshot_dir is None:
        own_cluster, connect_error = _connect(deps.config)
    try:
        gather_deps = deps if own_cluster is None else dataclasses.replace(deps, cluster=own_cluster)
        evidence: Evidence | None = None
        error: str | None = connect_error
        cluster: Cluster | None = None
        source = "cluster"
        if connect_error is None:
            evidence, error, cluster, source = await _collect(gather_deps, scope)
        not_run = (
            "not run: offline snapshot"
            if deps.snapshot_dir is not None
            else "not run: the cluster could not be read"
        )
        checks, checks_note = await _checks(gather_deps, cluster, evidence, scope, not_run)
    finally:
        if own_cluster is not None:
            await own_cluster.close()
    incidents, executions, messages, store_note = await _store_rows(deps.store, since)
    return summarize(
        title=title,
        namespaces=scope,
        generated_at=generated_at,
        evidence=evidence,
        collection_error=error,
        source=source,
        checks=checks,
        checks_note=checks_note,
        incidents=incidents,
        executions=executions,
        slack_messages=messages,
        previous=previous,
        store_note=store_note,
        timezone=schedule.timezone if schedule is not None else "UTC",
    )


def _connect(config: Config) -> tuple[Cluster | None, str | None]:
    from bot.cluster import Cluster, ClusterError

    try:
        return Cluster.from_config(config.cluster), None
    except ClusterError as exc:
        return None, str(exc)
